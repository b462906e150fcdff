"""Every published layout read where it lies: the same images as the MVTec AD layout, the same trial metrics,
and each layout's broken cases as one line naming the file."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_overrides
from masf.config import build_config
from masf.data.layouts import DATASETS, LAYOUTS, canonical_dataset, dataset_layout, recognise, resolve_layout
from masf.data.mvtec import MVTecDataset, list_samples, split_normals
from masf.data.synth import generate_dataset
from masf.data.synth_layouts import WRITTEN_LAYOUTS, write_layout
from masf.data.validate import validate_dataset, validate_or_raise
from masf.errors import DataError
from masf.metrics import METRIC_KEYS

CATEGORIES = ["carpet", "bottle"]
VAL_FRACTION, SEED = 0.2, 0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mvtec-layout")
    generate_dataset(root, categories=CATEGORIES, seed=0, size=32, n_train=10, n_test=8)
    return root


@pytest.fixture(scope="module")
def written(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """layout name -> the source written in it."""
    out = {}
    for name in WRITTEN_LAYOUTS:
        dst = tmp_path_factory.mktemp(name)
        write_layout(source, dst, name, val_fraction=VAL_FRACTION, seed=SEED)
        out[name] = dst
    return out


def fresh_copy(written: dict[str, Path], name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(written[name], dst)
    return dst


def digest(a: np.ndarray | None) -> str:
    return "-" if a is None else hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def split_items(root: Path, layout: str, category: str, split: str) -> list[tuple[int, str, str]]:
    """(label, image digest, mask digest) of every image of a split, in the reader's order."""
    ds = MVTecDataset(root, category, split, image_size=32, layout=layout, cache=False)  # type: ignore[arg-type]
    return [(s.label, digest(ds._read(i)[0]), digest(ds._read(i)[1])) for i, s in enumerate(ds.samples)]


def test_every_layout_is_written_and_known():
    assert set(WRITTEN_LAYOUTS) >= set(DATASETS)
    assert {DATASETS[n] for n in DATASETS} == set(LAYOUTS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_recognised_from_the_folder(written, name):
    layout, how = resolve_layout(written[name])
    assert layout is dataset_layout(name)
    assert "recognised" in how and layout.title in how
    named, how = resolve_layout(written[name], dataset=name)
    assert named is layout and "--dataset" in how


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_same_images_as_the_mvtec_layout(source, written, name):
    layout = dataset_layout(name)
    for category in CATEGORIES:
        assert layout.categories(written[name]) == sorted(CATEGORIES)
        ref_train = split_items(source, "mvtec_ad", category, "train")
        train = split_items(written[name], layout.name, category, "train")
        if layout.published_validation:
            keep, held = split_normals(len(ref_train), VAL_FRACTION, SEED)
            assert train == [ref_train[i] for i in keep]  # same images, same order
            assert split_items(written[name], layout.name, category, "validation") == [ref_train[i] for i in held]
        else:
            assert train == ref_train
        ref_test = split_items(source, "mvtec_ad", category, "test")
        test = split_items(written[name], layout.name, category, "test")
        assert sorted(test) == sorted(ref_test)  # defect types may be named otherwise, so the order may differ
        assert sum(label for label, _, _ in test) > 0 and any(label == 0 for label, _, _ in test)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_data_check_passes(written, name):
    report = validate_dataset(written[name])
    assert report.ok, [str(p) for p in report.errors]
    assert report.layout == dataset_layout(name).name and report.categories == sorted(CATEGORIES)
    assert "recognised" in report.how


def test_loco_keeps_logical_and_structural(written):
    types = {s.defect_type for s in list_samples(written["mvtec_loco"], "carpet", "test", "mvtec_loco")}
    assert types == {"good", "logical_anomalies", "structural_anomalies"}


def test_unknown_and_mixed_roots(written, tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'kitti' \(known: mvtec_ad, mpdd"):
        canonical_dataset("kitti")
    assert canonical_dataset("MVTec") == "mvtec_ad"
    mixed = tmp_path / "mixed"
    shutil.copytree(written["btad"] / "carpet", mixed / "carpet")
    shutil.copytree(written["mvtec_loco"] / "bottle", mixed / "bottle")
    layout, why = recognise(mixed)
    assert layout is None and "BTAD" in why and "MVTec LOCO AD" in why
    with pytest.raises(DataError) as exc:
        resolve_layout(mixed)
    assert "\n" not in str(exc.value) and "--dataset" in str(exc.value)
    category = written["mvtec_3d"] / "carpet"
    with pytest.raises(DataError, match=rf"carpet looks like one category of the MVTec 3D-AD layout: give the folder that holds the categories, {written['mvtec_3d']}"):
        resolve_layout(category)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="layout not recognised"):
        resolve_layout(empty)


# ---------------------------------------------------------------- broken cases: one line naming the file


def one_error(root: Path, **kw) -> str:
    with pytest.raises(DataError) as exc:
        validate_or_raise(root, "carpet", **kw)
    message = str(exc.value)
    assert "\n" not in message
    return message


def defective(root: Path, layout: str) -> list:
    return [s for s in list_samples(root, "carpet", "test", layout) if s.label == 1]


@pytest.mark.parametrize("name", ["mvtec_ad", "mvtec_3d", "mvtec_ad2", "btad", "visa"])
def test_missing_mask_names_the_image_and_the_mask_expected(written, tmp_path, name):
    root = fresh_copy(written, name, tmp_path)
    victim = defective(root, DATASETS[name])[0]
    victim.mask_path.unlink()
    if name == "visa":  # the CSV still names the mask: the reader opens it and names the missing file
        assert one_error(root).startswith(f"{victim.mask_path}: file not found")
    else:
        message = one_error(root)
        assert message.startswith(f"{victim.image_path}: no ground-truth mask (expected ")
        assert victim.mask_path.name in message


def test_loco_missing_mask_folder(written, tmp_path):
    root = fresh_copy(written, "mvtec_loco", tmp_path)
    victim = defective(root, "mvtec_loco")[0]
    assert victim.mask_path.is_dir()
    shutil.rmtree(victim.mask_path)
    message = one_error(root)
    assert message.startswith(f"{victim.image_path}: no ground-truth mask (expected {victim.mask_path}/")


def test_loco_mask_of_the_wrong_size(written, tmp_path):
    from PIL import Image

    root = fresh_copy(written, "mvtec_loco", tmp_path)
    victim = defective(root, "mvtec_loco")[0]
    mask = sorted(victim.mask_path.iterdir())[0]
    Image.new("L", (16, 16), 255).save(mask)
    assert one_error(root).startswith(f"{mask}: mask is 16x16 but its image {victim.image_path.name} is 32x32")


def test_visa_row_naming_no_file(written, tmp_path):
    root = fresh_copy(written, "visa", tmp_path)
    csv_path = root / "split_csv" / "1cls.csv"
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    line, row = next((i + 2, r) for i, r in enumerate(rows) if r["object"] == "carpet" and r["label"] == "anomaly")
    (root / row["image"]).unlink()
    assert one_error(root).startswith(f"{csv_path}:{line}: names image {row['image']}, which does not exist")


def test_visa_csv_without_a_column(written, tmp_path):
    root = fresh_copy(written, "visa", tmp_path)
    csv_path = root / "split_csv" / "1cls.csv"
    text = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([text[0].replace("mask", "maskfile")] + text[1:]) + "\n")
    message = one_error(root)
    assert f"{csv_path}: no column 'mask'" in message


def test_mvtec_3d_image_without_rgb_folder(written, tmp_path):
    root = fresh_copy(written, "mvtec_3d", tmp_path)
    folder = next(p for p in sorted((root / "carpet" / "test").iterdir()) if p.name != "good")
    shutil.rmtree(folder / "rgb")
    assert one_error(root).startswith(f"{folder / 'rgb'}: missing folder")


def test_mvtec_ad2_private_test_sets_are_refused(written):
    message = one_error(written["mvtec_ad2"], test_set="test_private")
    assert "test_private has no published labels" in message
    assert validate_or_raise(written["mvtec_ad2"], "carpet", test_set="test_public").ok


def test_published_validation_asked_where_there_is_none(written, tmp_path):
    from masf.trial.run import build_datasets

    cfg = build_config(None, {**tiny_overrides(written["btad"], "carpet"), "data.val_source": "published"})
    with pytest.raises(DataError, match="the BTAD layout publishes no validation split"):
        build_datasets(cfg, (0.5,) * 3, (0.25,) * 3)


# ---------------------------------------------------------------- a trial reads the same data in every layout


@pytest.fixture(scope="module")
def trial_rows(written, source, tmp_path_factory) -> dict[str, dict]:
    from masf.trial.run import run_trial

    rows = {}
    for name in ["mvtec_ad", *sorted(set(LAYOUTS) - {"mvtec_ad"})]:
        root = source if name == "mvtec_ad" else written[name]
        cfg = build_config(None, {**tiny_overrides(root, "carpet"), "train.epochs": 1, "train.restart_epochs": 1,
                                  "eval.timing_images": 0})
        rows[name] = run_trial(cfg, tmp_path_factory.mktemp(f"trial-{name}"))
    return rows


@pytest.mark.parametrize("name", sorted(set(LAYOUTS) - {"mvtec_ad"}))
def test_trial_metrics_identical_to_the_mvtec_layout(trial_rows, name):
    ref, row = trial_rows["mvtec_ad"], trial_rows[name]
    assert row["layout"] == name and ref["layout"] == "mvtec_ad"
    assert row["val_source"] == ("published" if LAYOUTS[name].published_validation else "train")
    assert row["train_images"] == ref["train_images"] and row["val_images"] == ref["val_images"]
    keys = [k for k in ref if k.startswith(("last/", "val/", "student_only/")) and "/defect/" not in k
            and isinstance(ref[k], float)]
    assert len(keys) >= len(METRIC_KEYS)
    for key in keys:
        assert row[key] == pytest.approx(ref[key], abs=1e-6), key
