"""The synthetic dataset written in every published layout: the files each layout expects, pixels equal to the
source's, the validation normals split_normals holds out, VisA's CSV rows, LOCO's split masks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from masf.cli.main import app
from masf.data.mvtec import image_files, split_normals
from masf.data.synth import generate_dataset
from masf.data.synth_layouts import (
    IMAGE_ROLES,
    LOCO_TYPES,
    LOCO_VALUES,
    PUBLISHED_VALIDATION,
    WRITTEN_LAYOUTS,
    loco_types,
    plan_layout,
    write_layout,
)
from masf.errors import DataError

CATEGORIES = ["bottle", "carpet"]
N_TRAIN, N_TEST = 10, 8
# where each layout keeps a category's training normals and its published validation normals
TRAIN_DIR = {"mvtec_ad": "train/good", "mpdd": "train/good", "mvtec_3d": "train/good/rgb", "visa": "Data/Images/Normal",
             "mvtec_ad2": "train/good", "mvtec_loco": "train/good", "btad": "train/ok"}
VAL_DIR = {"mvtec_3d": "validation/good/rgb", "mvtec_ad2": "validation/good", "mvtec_loco": "validation/good"}
SPLIT_MASK = ("bottle", "broken_large", "000")  # the source mask given a second region, so that LOCO splits it


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def mask_of(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im)
    return (arr.max(axis=-1) if arr.ndim == 3 else arr) > 0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    generate_dataset(src, categories=CATEGORIES, size=32, n_train=N_TRAIN, n_test=N_TEST, seed=0)
    category, defect, stem = SPLIT_MASK
    path = src / category / "ground_truth" / defect / f"{stem}_mask.png"
    mask = np.asarray(Image.open(path)).copy()
    far = (0, 0) if not mask[:4, :4].any() else (28, 28)
    mask[far[0]:far[0] + 2, far[1]:far[1] + 2] = 255  # a second region, apart from the first
    assert ndimage.label(mask > 0)[1] >= 2
    Image.fromarray(mask).save(path)
    return src


@pytest.fixture(scope="module")
def written(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, dict[str, int]]]]:
    out = tmp_path_factory.mktemp("layouts")
    return {layout: (out / layout, write_layout(source, out / layout, layout)) for layout in WRITTEN_LAYOUTS}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "README.txt"}


@pytest.mark.parametrize("layout", WRITTEN_LAYOUTS)
def test_expected_files(layout: str, source: Path, written) -> None:
    root, counts = written[layout]
    assert sorted(counts) == CATEGORIES
    for category, per in counts.items():
        assert sum(n for k, n in per.items() if k.split("/")[0] in ("train", "validation")) == N_TRAIN
        assert sum(n for k, n in per.items() if k.startswith("test/")) == N_TEST
    files = _files(root)
    if layout in ("mvtec_ad", "mpdd"):
        assert files == _files(source)  # the MVTec layout itself, file for file
        return
    for category in CATEGORIES:
        c = root / category
        if layout == "mvtec_3d":
            for split in ("train", "validation"):
                names = [p.stem for p in image_files(c / split / "good" / "rgb")]
                assert names and names == [p.stem for p in sorted((c / split / "good" / "xyz").glob("*.tiff"))]
            for folder in sorted((c / "test").iterdir()):
                rgb = [p.name for p in image_files(folder / "rgb")]
                assert rgb and rgb == [p.name for p in image_files(folder / "gt")]  # masks named like their images
                assert [f"{Path(n).stem}.tiff" for n in rgb] == sorted(p.name for p in (folder / "xyz").iterdir())
                if folder.name == "good":  # all-zero masks, as the real dataset has
                    assert all(not mask_of(folder / "gt" / n).any() for n in rgb)
            import tifffile

            xyz = tifffile.imread(next((c / "train" / "good" / "xyz").iterdir()))
            assert xyz.dtype == np.float32 and xyz.shape == (32, 32, 3)
        elif layout == "visa":
            assert (root / "split_csv" / "1cls.csv").is_file() and (c / "image_anno.csv").is_file()
            anomalies = [p.name for p in image_files(c / "Data" / "Images" / "Anomaly")]
            assert anomalies and anomalies == [p.name for p in image_files(c / "Data" / "Masks" / "Anomaly")]
            assert len(image_files(c / "Data" / "Images" / "Normal")) == counts[category]["train/good"] + counts[category]["test/good"]
        elif layout == "mvtec_ad2":
            bad = image_files(c / "test_public" / "bad")
            assert bad and image_files(c / "test_public" / "good")
            assert [f"{p.stem}_mask.png" for p in bad] == [p.name for p in image_files(c / "test_public" / "ground_truth" / "bad")]
            for private in ("test_private", "test_private_mixed"):
                assert image_files(c / private) and not (c / private / "ground_truth").exists()
                assert all(p.parent == c / private for p in (c / private).rglob("*"))  # images only, no labels
        elif layout == "mvtec_loco":
            assert sorted(p.name for p in (c / "test").iterdir()) == ["good", *LOCO_TYPES]
            for kind in LOCO_TYPES:
                images = image_files(c / "test" / kind)
                assert images and [p.stem for p in images] == sorted(p.name for p in (c / "ground_truth" / kind).iterdir())
                assert all(image_files(c / "ground_truth" / kind / p.stem)[0].name == "000.png" for p in images)
            assert set(json.loads((c / "defect_types.json").read_text())) == {
                f"{kind}/{p.name}" for kind in LOCO_TYPES for p in image_files(c / "test" / kind)}
        elif layout == "btad":
            ko = image_files(c / "test" / "ko")
            assert ko and image_files(c / "test" / "ok") and image_files(c / "train" / "ok")
            assert [p.name for p in ko] == [p.name for p in image_files(c / "ground_truth" / "ko")]  # STEM.png


@pytest.mark.parametrize("layout", WRITTEN_LAYOUTS)
def test_every_image_has_the_source_pixels(layout: str, source: Path, written) -> None:
    root, _ = written[layout]
    plans = plan_layout(source, layout)
    for plan in plans.values():
        for entry in plan:
            dst = root / entry.dst
            assert dst.is_file(), entry.dst
            if entry.role in IMAGE_ROLES:
                assert np.array_equal(pixels(dst), pixels(entry.src)), entry.dst
            elif entry.role == "mask" and entry.part is None:
                assert np.array_equal(mask_of(dst), mask_of(entry.src)), entry.dst
    written_images = sum(e.role in IMAGE_ROLES for plan in plans.values() for e in plan)
    n_private = 2 * 2 * 2 * len(CATEGORIES) if layout == "mvtec_ad2" else 0  # 2 good + 2 defective, 2 private sets
    assert written_images == len(CATEGORIES) * (N_TRAIN + N_TEST) + n_private


@pytest.mark.parametrize("layout", WRITTEN_LAYOUTS)
def test_train_and_validation_hold_the_source_normals(layout: str, source: Path, written) -> None:
    root, _ = written[layout]
    for category in CATEGORIES:
        normals = image_files(source / category / "train" / "good")
        train_idx, val_idx = split_normals(len(normals), 0.2, 0)
        if layout not in PUBLISHED_VALIDATION:
            train_idx, val_idx = list(range(len(normals))), []
        train = image_files(root / category / TRAIN_DIR[layout])
        if layout == "visa":  # Normal holds the test normals too: the CSV says which are train
            with (root / "split_csv" / "1cls.csv").open(newline="") as f:
                listed = {r["image"] for r in csv.DictReader(f) if r["object"] == category and r["split"] == "train"}
            train = [p for p in train if p.relative_to(root).as_posix() in listed]
        val = image_files(root / category / VAL_DIR[layout]) if layout in VAL_DIR else []
        assert [pixels(p).tobytes() for p in train] == [pixels(normals[i]).tobytes() for i in train_idx]
        assert [pixels(p).tobytes() for p in val] == [pixels(normals[i]).tobytes() for i in val_idx]
        if layout in PUBLISHED_VALIDATION:  # names unchanged
            assert [p.name for p in val] == [normals[i].name for i in val_idx] and len(val) == 2


def test_visa_csv_rows_point_at_existing_files(source: Path, written) -> None:
    root, counts = written["visa"]
    with (root / "split_csv" / "1cls.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["object", "split", "label", "image", "mask"]
        rows = list(reader)
    assert len(rows) == len(CATEGORIES) * (N_TRAIN + N_TEST)
    for row in rows:
        assert row["split"] in ("train", "test") and row["label"] in ("normal", "anomaly")
        assert (root / row["image"]).is_file() and row["image"].startswith(f"{row['object']}/Data/Images/")
        if row["label"] == "normal":
            assert row["mask"] == "" and "/Normal/" in row["image"]
        else:
            assert row["split"] == "test" and "/Anomaly/" in row["image"]
            values = set(np.unique(np.asarray(Image.open(root / row["mask"]))).tolist())
            assert values == {0, 1}  # VisA's masks hold small values, not 255
    for category in CATEGORIES:
        mine = [r for r in rows if r["object"] == category]
        assert Counter((r["split"], r["label"]) for r in mine) == {
            ("train", "normal"): N_TRAIN, ("test", "normal"): counts[category]["test/good"],
            ("test", "anomaly"): N_TEST - counts[category]["test/good"]}
        with (root / category / "image_anno.csv").open(newline="") as f:
            anno = list(csv.DictReader(f))
        source_types = Counter(p.parent.name for p in (source / category / "test").glob("*/*.png") if p.parent.name != "good")
        assert Counter(a["label"] for a in anno if a["label"] != "normal") == source_types
        assert all((root / a["image"]).is_file() and (not a["mask"] or (root / a["mask"]).is_file()) for a in anno)


def test_loco_masks_split_by_region_and_union_to_the_source(source: Path, written) -> None:
    root, _ = written["mvtec_loco"]
    split_seen = 0
    for category, plan in plan_layout(source, "mvtec_loco").items():
        kinds = sorted({e.defect for e in plan if e.role == "test" and e.defect != "good"})
        assert loco_types(kinds) == {k: LOCO_TYPES[i % 2] for i, k in enumerate(kinds)}
        images = [e for e in plan if e.role == "test" and e.defect != "good"]
        for image in images:
            folder = root / image.dst.replace("/test/", "/ground_truth/", 1).removesuffix(".png")
            source_mask_path = next(e.src for e in plan if e.role == "mask" and e.dst.startswith(folder.relative_to(root).as_posix() + "/"))
            source_mask = mask_of(source_mask_path)
            files = image_files(folder)
            assert np.array_equal(np.logical_or.reduce([mask_of(p) for p in files]), source_mask), folder
            if ndimage.label(source_mask)[1] >= 2:
                split_seen += 1
                assert [p.name for p in files] == ["000.png", "001.png"]
                for p, value in zip(files, LOCO_VALUES):
                    assert set(np.unique(np.asarray(Image.open(p))).tolist()) == {0, value}
            else:
                assert [p.name for p in files] == ["000.png"]
                assert set(np.unique(np.asarray(Image.open(files[0]))).tolist()) == {0, 255}
    assert split_seen >= 1


def test_unknown_layout_is_one_line(source: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        write_layout(source, tmp_path / "out", "mvtec_4d")
    message = str(info.value)
    assert "\n" not in message and "'mvtec_4d'" in message and all(name in message for name in WRITTEN_LAYOUTS)
    assert not (tmp_path / "out").exists()


def test_rewrites_its_own_folders_and_refuses_others(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "visa"
    first = write_layout(source, dst, "visa")
    assert write_layout(source, dst, "visa") == first  # its own category folders are replaced
    (dst / "bottle" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"bottle holds notes.txt, which the visa layout does not; refusing"):
        write_layout(source, dst, "visa")
    with pytest.raises(DataError, match="apart from its source"):
        write_layout(source, source / "inside", "btad")


def test_cli_synth_writes_visa(tmp_path: Path) -> None:
    out = tmp_path / "visa"
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--categories", "bottle", "--size", "32",
                                      "--train", "4", "--test", "5", "--layout", "visa"])
    assert result.exit_code == 0, result.output
    assert (out / "split_csv" / "1cls.csv").is_file() and (out / "bottle" / "image_anno.csv").is_file()
    assert len(image_files(out / "bottle" / "Data" / "Images" / "Normal")) == 4 + 2  # train normals + test normals
    assert not (out / "bottle" / "train").exists()  # nothing of the MVTec layout it was drawn in
    assert f"masf-bench data check {out} --dataset visa" in result.output
    row = next(line for line in result.output.splitlines() if "bottle" in line)
    assert [cell.strip() for cell in row.split("│")[1:5]] == ["bottle", "4", "2", "3"]
