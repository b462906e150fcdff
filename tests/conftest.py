"""Shared fixtures: a small synthetic dataset, the real data beside the checkout, tiny configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from services import SMOKE, cli

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

torch.set_num_threads(1)  # tiny tensors: one thread is fastest and never oversubscribes a shared CPU


@pytest.fixture(scope="session")
def real_root() -> Path:
    if not (REAL_DATA / "metal_plate").is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bottle and carpet at 64 px, 8 train and 8 test images each (generated once per session)."""
    from masf.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, categories=["bottle", "carpet"], seed=0, size=64, n_train=8, n_test=8)
    return root


@pytest.fixture(scope="session")
def finished_sweep(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One sweep on the default local path, run once per session: bottle, carpet and 'broken' (a copy of bottle with
    an unreadable test image) x full, patchcore, experiment 'local', its SQLite store in ``cwd``."""
    cwd = tmp_path_factory.mktemp("local-sweep")
    data = cwd / "data"
    shutil.copytree(synth_root, data)
    shutil.copytree(data / "bottle", data / "broken")
    victim = sorted((data / "broken" / "test" / "good").iterdir())[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = cli("run", "--categories", "bottle,carpet,broken", "--variants", "full,patchcore", "--data-root", str(data),
              "--experiment", "local", "--max-failures", "1", *SMOKE, cwd=cwd)
    return {"cwd": cwd, "experiment": "local", "out": out, "victim": victim}


@pytest.fixture
def tiny():
    """Factory of overrides for a random-init resnet18 teacher at 32 px: fast enough for many unit tests."""
    return tiny_overrides


def tiny_overrides(root: Path, category: str = "bottle") -> dict:
    return {
        "data.root": str(root),
        "data.category": category,
        "data.image_size": 32,
        "data.batch_size": 4,
        "data.eval_batch_size": 8,
        "model.teacher.name": "resnet18",
        "model.teacher.weights": "none",
        "model.ttsa.views": 2,
        "train.epochs": 2,
        "train.warmup_epochs": 1,
        "train.restart_epochs": 2,
        "eval.figures": False,
        "train.threads": 1,
    }
