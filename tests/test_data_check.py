"""validate_dataset and `masf-bench data check` on the real data and on broken copies in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masf.cli.main import app
from masf.data.validate import Report, validate_dataset, validate_or_raise
from masf.errors import DataError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")


def noisy(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def quarter_mask(size: tuple[int, int] = (64, 64), values: tuple[int, int] = (0, 255)) -> Image.Image:
    w, h = size
    arr = np.full((h, w), values[0], dtype=np.uint8)
    arr[: h // 2, : w // 2] = values[1]
    return Image.fromarray(arr)


def write(path: Path, im: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A valid category 'widget': 3 train, 2 test good, 2 crack + 1 hole with masks."""
    cat = tmp_path / "data" / "widget"
    for i in range(3):
        write(cat / "train" / "good" / f"{i:03d}.png", noisy(seed=i))
    for i in range(2):
        write(cat / "test" / "good" / f"{i:03d}.png", noisy(seed=10 + i))
        write(cat / "test" / "crack" / f"{i:03d}.png", noisy(seed=20 + i))
        write(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", quarter_mask())
    write(cat / "test" / "hole" / "000.png", noisy(seed=30))
    write(cat / "ground_truth" / "hole" / "000_mask.png", quarter_mask(values=(0, 1)))
    return tmp_path / "data"


def errors_for(report: Report, path: Path) -> list[str]:
    return [p.message for p in report.errors if p.path == str(path)]


@needs_real
def test_real_data_passes():
    report = validate_dataset(REAL)
    assert report.ok, [str(p) for p in report.problems]
    assert report.categories == ["metal_plate", "wood"]
    assert report.counts["metal_plate"] == {("train", "good"): 54, ("test", "good"): 26, ("test", "defect"): 71}
    assert report.counts["wood"] == {("train", "good"): 70, ("test", "good"): 70, ("test", "defect"): 71}


def test_valid_dataset_passes(root: Path):
    report = validate_dataset(root)
    assert report.ok and report.problems == []
    assert report.categories == ["widget"]
    assert report.counts["widget"] == {("train", "good"): 3, ("test", "good"): 2, ("test", "crack"): 2, ("test", "hole"): 1}
    assert validate_or_raise(root, "widget").ok


def test_corrupt_png(root: Path):
    bad = root / "widget" / "train" / "good" / "001.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    report = validate_dataset(root)
    assert errors_for(report, bad) == ["not a readable image (unrecognised format)"]
    assert len(report.errors) == 1


def test_truncated_png(root: Path):
    bad = root / "widget" / "test" / "crack" / "001.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    assert errors_for(validate_dataset(root), bad) == ["cannot decode image (truncated)"]
    assert validate_dataset(root, deep=False).ok  # a header-only pass cannot see it


def test_empty_file(root: Path):
    bad = root / "widget" / "test" / "good" / "000.png"
    bad.write_bytes(b"")
    assert errors_for(validate_dataset(root), bad) == ["empty file (0 bytes)"]


def test_missing_mask(root: Path):
    (root / "widget" / "ground_truth" / "crack" / "001_mask.png").unlink()
    image = root / "widget" / "test" / "crack" / "001.png"
    (message,) = errors_for(validate_dataset(root), image)
    assert message == f"no ground-truth mask (expected {root / 'widget' / 'ground_truth' / 'crack' / '001_mask.png'})"


def test_mask_of_other_size(root: Path):
    mask = write(root / "widget" / "ground_truth" / "crack" / "000_mask.png", quarter_mask((64, 48)))
    assert errors_for(validate_dataset(root), mask) == ["mask is 64x48 but its image 000.png is 64x64"]
    assert errors_for(validate_dataset(root, deep=False), mask) == ["mask is 64x48 but its image 000.png is 64x64"]


def test_non_binary_masks(root: Path):
    few = write(root / "widget" / "ground_truth" / "crack" / "000_mask.png", quarter_mask(values=(0, 128)))
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))  # 64 distinct grey levels, as from a JPEG
    many = write(root / "widget" / "ground_truth" / "hole" / "000_mask.png", Image.fromarray(ramp))
    report = validate_dataset(root)
    assert errors_for(report, few) == ["mask is not binary (values 0, 128), expected 0 and 255 (or 0 and 1)"]
    assert errors_for(report, many) == ["mask has 64 distinct values (0..252), expected 0 and 255 (or 0 and 1)"]


def test_rgb_and_palette_binary_masks_pass(root: Path):
    write(root / "widget" / "ground_truth" / "crack" / "000_mask.png", quarter_mask().convert("RGB"))
    write(root / "widget" / "ground_truth" / "crack" / "001_mask.png", quarter_mask().convert("1"))
    assert validate_dataset(root).ok


def test_empty_train_split(root: Path):
    for p in (root / "widget" / "train" / "good").iterdir():
        p.unlink()
    report = validate_dataset(root)
    assert errors_for(report, root / "widget" / "train" / "good") == ["no training images (folder is empty)"]


def test_test_split_needs_both_classes(root: Path):
    for p in (root / "widget" / "test" / "good").iterdir():
        p.unlink()
    (message,) = errors_for(validate_dataset(root), root / "widget" / "test" / "good")
    assert "no good test images" in message and "needs both" in message


def test_test_split_without_defects(tmp_path: Path):
    cat = tmp_path / "plain"
    write(cat / "train" / "good" / "0.png", noisy())
    write(cat / "test" / "good" / "0.png", noisy())
    (message,) = errors_for(validate_dataset(tmp_path), cat / "test")
    assert "no defective test images" in message


def test_unknown_category_and_bad_names(root: Path):
    report = validate_dataset(root, "bottle")
    assert [str(p) for p in report.problems] == [f"{root}: unknown category 'bottle' (found: widget)"]
    for name in ("../widget", "a/b", "/abs", ""):
        (problem,) = validate_dataset(root, name).problems
        assert repr(name) in problem.message
    (problem,) = validate_dataset(root / "missing").problems
    assert problem.path == str(root / "missing") and "does not exist" in problem.message


def test_every_problem_at_once(root: Path):
    corrupt = root / "widget" / "train" / "good" / "002.png"
    corrupt.write_bytes(b"\x89PNG not really")
    (root / "widget" / "ground_truth" / "crack" / "000_mask.png").unlink()
    grey = write(root / "widget" / "ground_truth" / "hole" / "000_mask.png", quarter_mask(values=(3, 200)))
    orphan = write(root / "widget" / "ground_truth" / "crack" / "007_mask.png", quarter_mask())
    report = validate_dataset(root)
    culprits = {p.path for p in report.errors}
    assert culprits == {str(corrupt), str(root / "widget" / "test" / "crack" / "000.png"), str(grey)}
    assert [p.path for p in report.warnings] == [str(orphan)]
    with pytest.raises(DataError) as info:
        validate_or_raise(root, "widget")
    text = str(info.value)
    assert "\n" not in text and "(and 2 more problems; run `masf-bench data check" in text and "--category widget`)" in text
    assert text.startswith(str(report.errors[0]))


def test_warnings_do_not_fail(root: Path):
    write(root / "widget" / "ground_truth" / "crack" / "009_mask.png", quarter_mask())
    (root / "widget" / "train" / "good" / "readme.txt").write_text("x")
    report = validate_dataset(root)
    assert report.ok and len(report.warnings) == 2


def test_full_category_is_fast(tmp_path: Path):
    import time

    cat = tmp_path / "big"
    for i in range(150):
        write(cat / "train" / "good" / f"{i:03d}.png", noisy((128, 128), seed=i))
    for i in range(50):
        write(cat / "test" / "good" / f"{i:03d}.png", noisy((128, 128), seed=1000 + i))
        write(cat / "test" / "scratch" / f"{i:03d}.png", noisy((128, 128), seed=2000 + i))
        write(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png", quarter_mask((128, 128)))
    start = time.perf_counter()
    assert validate_dataset(tmp_path).ok
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------ CLI


runner = CliRunner()


def test_cli_check_ok(root: Path):
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    assert "OK: 1 category, 8 images, no problems" in result.output
    assert "crack" in result.output and "widget" in result.output


def test_cli_check_broken(root: Path):
    bad = root / "widget" / "test" / "crack" / "001.png"
    bad.write_bytes(bad.read_bytes()[:100])
    (root / "widget" / "ground_truth" / "hole" / "000_mask.png").unlink()
    result = runner.invoke(app, ["data", "check", str(root), "--category", "widget"])
    assert result.exit_code == 1
    assert f"error: {bad}: cannot decode image (truncated)" in result.output
    assert str(root / "widget" / "test" / "hole" / "000.png") in result.output
    assert "2 problems in" in result.output


def test_cli_check_unknown_category(root: Path):
    result = runner.invoke(app, ["data", "check", str(root), "--category", "bottle"])
    assert result.exit_code == 1 and "unknown category 'bottle' (found: widget)" in result.output


@needs_real
def test_cli_check_real():
    result = runner.invoke(app, ["data", "check", str(REAL)])
    assert result.exit_code == 0, result.output
    assert "OK: 2 categories, 362 images" in result.output


def test_cli_synth_rejects_unknown_category(tmp_path: Path):
    from masf.cli.data import parse_categories

    assert parse_categories("bottle, wood") == ["bottle", "wood"]
    assert parse_categories(None) is None
    with pytest.raises(DataError, match=r"unknown category 'bottel' \(choose from: bottle, cable, .*zipper\)"):
        parse_categories("bottle,bottel")
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--categories", "bottel"])
    assert result.exit_code != 0 and not (tmp_path / "s").exists()


def test_cli_synth_passes_only_given_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys
    import types

    calls: list[tuple[Path, dict]] = []

    def generate_dataset(out: Path, **kwargs) -> dict[str, dict[str, int]]:
        calls.append((out, kwargs))
        return {"bottle": {"train/good": 4, "test/good": 2, "test/broken_large": 1, "test/contamination": 1}}

    monkeypatch.setitem(sys.modules, "masf.data.synth", types.SimpleNamespace(generate_dataset=generate_dataset))
    out = tmp_path / "s"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--categories", "bottle", "--train", "4"])
    assert result.exit_code == 0, result.output
    assert calls == [(out, {"categories": ["bottle"], "n_train": 4})]  # the library's defaults apply to the rest
    row = next(line for line in result.output.splitlines() if "bottle" in line)
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["bottle", "4", "2", "2", "broken_large, contamination"]
    assert f"masf-bench data check {out}" in result.output
