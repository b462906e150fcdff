"""What every bench script's ``--smoke-test`` shares: the same code path at tiny sizes, nothing kept.

- ``TINY``: config overrides for a random-init resnet18 teacher at 32 px, one epoch, two TTSA views;
- ``synthetic_data``: the synthetic dataset generated small into a temporary folder;
- ``check_out``: a smoke run never writes into bench/results/ (those files are the measured figures).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

RESULTS = Path(__file__).resolve().parent / "results"
HELP = "a cheap run of the same code (tiny sizes, seconds), for tests; writes nothing into bench/results"

TINY = (
    "model.teacher.name=resnet18",
    "model.teacher.weights=none",
    "data.image_size=32",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "model.ttsa.views=2",
    "train.epochs=1",
    "train.warmup_epochs=1",
    "train.restart_epochs=1",
    "train.threads=1",
    "eval.figures=false",
)


def add_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--smoke-test", action="store_true", help=HELP)


@contextlib.contextmanager
def synthetic_data(categories: Sequence[str] = ("bottle",), size: int = 64, n_train: int = 8, n_test: int = 8) -> Iterator[Path]:
    """The synthetic categories generated (seed 0) into a temporary folder, removed afterwards."""
    from masf.data.synth import generate_dataset

    with tempfile.TemporaryDirectory(prefix="masf-smoke-data-") as tmp:
        generate_dataset(Path(tmp), categories=list(categories), seed=0, size=size, n_train=n_train, n_test=n_test)
        yield Path(tmp)


def check_out(*paths: Optional[Union[str, Path]]) -> None:
    """Stop a smoke run asked to write into bench/results/, before it runs."""
    for p in paths:
        if p is not None and Path(p).resolve().is_relative_to(RESULTS):
            raise SystemExit(f"--smoke-test writes nothing into {RESULTS}: leave --out out or point it elsewhere ({p})")
