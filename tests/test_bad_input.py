"""Bad input fails fast with one line naming the culprit, before any trial starts where it can be
checked up front; what can only be found inside a category fails that trial alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masf.config import build_config
from masf.errors import MasfError, WeightsError
from masf.method.teacher import build_teacher
from masf.trial import run_trial
from services import cli, free_port


def _one_line(out) -> str:
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), out.stdout + out.stderr
    return lines[0]


RUN_CASES = [
    (["--categories", "bottle,nope"], "unknown category 'nope'"),
    (["--categories", "../bottle"], "'../bottle'"),
    (["--categories", "bottle/../carpet"], "'bottle/../carpet'"),
    (["--categories", "bottle", "--variants", "full,no_such"], "unknown variant 'no_such'"),
    (["--categories", "bottle", "--set", "model.samb.kk=3"], "unknown config key 'model.samb.kk'"),
    (["--categories", "bottle", "--set", "model.samb.k=three"], "model.samb.k: expected int"),
    (["--categories", "bottle", "--set", "model.teacher.name=resnet_does_not_exist"], "'resnet_does_not_exist'"),
    (["--categories", "bottle", "--address", "127.0.0.1:{port}"], "cannot reach the Ray cluster at 127.0.0.1:"),
    (["--categories", "bottle", "--seeds", "0,x"], "--seeds"),
]


@pytest.mark.parametrize("args, culprit", RUN_CASES)
def test_run_rejects_bad_input_before_any_trial(synth_root, tmp_path, args, culprit):
    args = [a.replace("{port}", str(free_port())) for a in args]
    out = cli("run", "--data-root", str(synth_root), "--preset", "smoke", *args, cwd=tmp_path)
    assert culprit in _one_line(out)
    assert not (tmp_path / "masf-runs").exists()  # nothing was scheduled


def test_missing_weights_offline_say_how_to_provide_them(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with pytest.raises(WeightsError) as info:
            build_teacher(build_config("paper").model.teacher)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    msg = str(info.value)
    assert "wide_resnet50_2" in msg and "timm" in msg and "weights_file" in msg and "\n" not in msg
    with pytest.raises(WeightsError, match="weights_file: .*missing.pt does not exist"):
        build_teacher(build_config(None, {"model.teacher.weights": "file", "model.teacher.weights_file": str(tmp_path / "missing.pt")}).model.teacher)
    with pytest.raises(WeightsError, match="packaged' holds tf_efficientnet_lite0 only"):
        build_teacher(build_config(None, {"model.teacher.name": "resnet18", "model.teacher.weights": "packaged"}).model.teacher)


def test_missing_weights_stop_a_sweep_up_front(synth_root, tmp_path):
    out = cli("run", "--categories", "bottle", "--data-root", str(synth_root), "--preset", "paper", cwd=tmp_path,
              env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    line = _one_line(out)
    assert "wide_resnet50_2" in line and "weights" in line
    assert not (tmp_path / "masf-runs").exists()


def _category(root: Path, name: str = "odd") -> Path:
    """A category of grayscale, RGBA, palette and 16-bit images of many sizes."""
    rng = np.random.default_rng(0)
    cat = root / name
    sizes = [(50, 40), (64, 64), (97, 31), (128, 90), (33, 77)]
    modes = ["L", "RGBA", "RGB", "P", "I;16"]
    for split, n in (("train/good", 6), ("test/good", 3), ("test/scratch", 3)):
        (cat / split).mkdir(parents=True)
        for i in range(n):
            w, h = sizes[i % len(sizes)]
            arr = (rng.random((h, w, 3)) * 80 + 90).astype(np.uint8)
            if split == "test/scratch":
                arr[h // 3 : h // 3 + 4, : w // 2] = 250
            mode = modes[i % len(modes)]
            if mode == "I;16":  # 16-bit grayscale
                im = Image.fromarray(np.asarray(Image.fromarray(arr).convert("L")).astype(np.uint16) * 257)
            else:
                im = Image.fromarray(arr).convert(mode)
            im.save(cat / split / f"{i:03d}.png")
            if split == "test/scratch":
                mask = np.zeros((h, w), np.uint8)
                mask[h // 3 : h // 3 + 4, : w // 2] = 255
                (cat / "ground_truth" / "scratch").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return cat


def test_grayscale_rgba_16bit_and_mixed_sizes_train(tmp_path, tiny):
    _category(tmp_path)
    row = run_trial(build_config(None, tiny(tmp_path, "odd")), tmp_path / "out")
    assert 0.0 <= row["last/image_auroc"] <= 1.0 and row["test_images"] == 6


@pytest.mark.parametrize(
    "damage, culprit",
    [
        ("corrupt", "001.png"),
        ("truncated", "002.png"),
        ("missing_mask", "000_mask.png"),
        ("mask_size", "001_mask.png"),
        ("nonbinary", "002_mask.png"),
        ("empty_train", "train"),
    ],
)
def test_broken_category_names_the_file(tmp_path, tiny, damage, culprit):
    cat = _category(tmp_path)
    if damage == "corrupt":
        (cat / "test/scratch/001.png").write_bytes(os.urandom(300))
    elif damage == "truncated":
        data = (cat / "test/scratch/002.png").read_bytes()
        (cat / "test/scratch/002.png").write_bytes(data[: len(data) // 2])
    elif damage == "missing_mask":
        (cat / "ground_truth/scratch/000_mask.png").unlink()
    elif damage == "mask_size":
        Image.new("L", (5, 5)).save(cat / "ground_truth/scratch/001_mask.png")
    elif damage == "nonbinary":
        m = np.asarray(Image.open(cat / "ground_truth/scratch/002_mask.png")).copy()
        m[0, :5] = 77
        Image.fromarray(m).save(cat / "ground_truth/scratch/002_mask.png")
    elif damage == "empty_train":
        shutil.rmtree(cat / "train/good")
        (cat / "train/good").mkdir()
    with pytest.raises(MasfError) as info:
        run_trial(build_config(None, tiny(tmp_path, "odd")), tmp_path / "out")
    assert culprit in str(info.value) and "\n" not in str(info.value)
