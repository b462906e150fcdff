"""The validation protocol: a seeded split of the training normals, pseudo-anomalies with exact
masks, best_on_val chosen without the test split, and F1 at thresholds fixed on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from masf.config import ConfigError, build_config
from masf.data.mvtec import MVTecDataset, split_calibration, split_normals
from masf.data.pseudo import PSEUDO_KINDS, ValidationSet, changed, pseudo_anomaly
from masf.data.synth import MASK_THRESHOLD
from masf.errors import DataError
from masf.method.model import MASF
from masf.metrics import f1_at, f1_threshold
from masf.method.teacher import build_teacher
from masf.trial.trainer import Trainer
from masf.trial.run import build_datasets


def _paths(ds) -> list[str]:
    """A split's image paths; a validation split's with its calibration normals."""
    if isinstance(ds, ValidationSet):
        return sorted(str(s.image_path) for s in ds.normals.samples + (ds.calibration.samples if ds.calibration else []))
    return [str(s.image_path) for s in ds.samples]


def test_split_is_disjoint_complete_and_independent_of_the_training_seed(synth_root, tiny):
    splits = []
    for seed in (0, 5):
        cfg = build_config(None, {**tiny(synth_root), "train.seed": seed, "data.val_fraction": 0.25})
        train, val, _ = build_datasets(cfg, (0.5,) * 3, (0.2,) * 3)
        splits.append((_paths(train), _paths(val)))
    (train, val), again = splits[0], splits[1]
    assert again == (train, val)  # the training seed does not move the split
    assert len(val) == 2 and len(train) == 6 and not set(train) & set(val)
    cfg = build_config(None, {**tiny(synth_root), "data.val_fraction": 0.25})
    held = build_datasets(cfg, (0.5,) * 3, (0.2,) * 3)[1]
    # half the validation normals calibrate, the other half select; disjoint
    assert len(held.normals) == 1 and len(held.calibration) == 1 and len(held) == 2
    assert held.normals.samples[0].image_path != held.calibration.samples[0].image_path
    everything = sorted(str(p) for p in (synth_root / "bottle" / "train" / "good").iterdir())
    assert sorted(train + val) == everything
    other = build_config(None, {**tiny(synth_root), "data.seed": 1, "data.val_fraction": 0.25})
    assert _paths(build_datasets(other, (0.5,) * 3, (0.2,) * 3)[1]) != val  # the data seed does


def test_capped_subsets_follow_the_data_seed_not_the_training_seed(synth_root, tiny):
    seen = []
    for seed in (0, 3):
        cfg = build_config(None, {**tiny(synth_root), "train.seed": seed, "data.max_train_images": 3, "data.max_test_images": 5})
        train, _, test = build_datasets(cfg, (0.5,) * 3, (0.2,) * 3)
        seen.append((_paths(train), _paths(test)))
    assert seen[0] == seen[1] and len(seen[0][0]) == 3 and len(seen[0][1]) == 5


def test_calibration_share_of_the_validation_normals():
    assert split_calibration([], 0.5, 0) == ([], [])
    assert split_calibration([3], 0.5, 0) == ([3], [])  # at least one is left to select on
    select, calib = split_calibration(list(range(10, 21)), 0.5, 0)
    assert len(calib) == 6 and len(select) == 5 and sorted(select + calib) == list(range(10, 21))
    assert split_calibration(list(range(10, 21)), 0.5, 0) == (select, calib)  # seeded
    assert split_calibration(list(range(10, 21)), 0.0, 0) == (list(range(10, 21)), [])


def test_split_leaves_enough_or_says_which_key():
    assert split_normals(10, 0.0, 0) == (list(range(10)), [])
    train, val = split_normals(10, 0.2, 0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    with pytest.raises(DataError, match=r"bottle/train/good: 3 image\(s\) are too few for data.val_fraction=0.5"):
        split_normals(3, 0.5, 0, where="bottle/train/good")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        build_config(None, {"data.val_fraction": 1.0})


@pytest.mark.parametrize("kind", PSEUDO_KINDS)
def test_pseudo_anomaly_mask_is_exactly_what_changed(kind):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    img = np.stack([(yy * 2) % 256, (xx * 3) % 256, ((yy + xx) * 5) % 256], -1).astype(np.uint8)  # structured texture
    out, mask = pseudo_anomaly(img, kind, np.random.default_rng(7))
    assert out.shape == img.shape and out.dtype == np.uint8 and mask.shape == img.shape[:2]
    assert mask.sum() >= 4  # a visible defect
    diff = np.abs(out.astype(int) - img.astype(int)).max(-1)
    assert np.all(diff[mask == 1] > MASK_THRESHOLD * 255) and np.all(diff[mask == 0] <= MASK_THRESHOLD * 255)
    np.testing.assert_array_equal(changed(out, img), mask)
    gray = np.repeat(img[..., :1], 3, -1)
    g_out, _ = pseudo_anomaly(gray, kind, rng)
    assert np.all(g_out[..., 0] == g_out[..., 1]) and np.all(g_out[..., 1] == g_out[..., 2])  # gray stays gray


def test_validation_set_pairs_normals_with_their_pseudo_anomalies(synth_root):
    normals = MVTecDataset(synth_root, "carpet", "train", image_size=64, indices=[0, 3, 5])
    val = ValidationSet(normals, seed=4)
    assert len(val) == 6 and val.labels().tolist() == [0, 0, 0, 1, 1, 1]
    for i in range(3):
        good, bad = val[i], val[3 + i]
        assert good["label"] == 0 and good["mask"].sum() == 0 and bad["label"] == 1
        assert bad["defect_type"].startswith("pseudo_") and bad["path"] == good["path"]
        # the mask marks exactly the pixels that differ from the normal image
        moved = (bad["image"] - good["image"]).abs().amax(0) > 1e-6
        assert torch.equal(moved[bad["mask"][0] > 0], torch.ones(int(bad["mask"].sum()), dtype=torch.bool))
        assert bad["mask"].sum() > 0
    again = ValidationSet(MVTecDataset(synth_root, "carpet", "train", image_size=64, indices=[0, 3, 5]), seed=4)
    assert torch.equal(again[4]["image"], val[4]["image"])  # seeded: the same validation set in any process


def test_thresholds_fixed_on_validation():
    val_s, val_y = np.array([0.1, 0.2, 0.6, 0.9]), np.array([0, 0, 1, 1])
    t = f1_threshold(val_s, val_y)
    assert t == 0.6  # the lowest threshold that separates validation perfectly
    # on test, score >= 0.6 flags one image, a true defect, and misses the other: F1 = 2 * 1 / (1 + 2)
    assert f1_at(np.array([0.1, 0.5, 0.7, 0.3]), np.array([0, 1, 1, 0]), t) == pytest.approx(2 / 3)
    assert f1_at(np.array([0.0, 1.0]), np.array([0, 1]), 0.5) == 1.0


class Poisoned(Dataset):
    """The test split with its labels and masks reversed across images: every test number changes."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item, other = dict(self.base[i]), self.base[len(self.base) - 1 - i]
        item["label"], item["mask"] = other["label"], other["mask"]
        return item


def _fit(cfg, out, poison: bool):
    torch.manual_seed(cfg.train.seed)  # the random-init teacher too: both runs must train the same model
    teacher = build_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    torch.manual_seed(cfg.train.seed)
    model = MASF(cfg.model, teacher, seed=cfg.train.seed)
    return Trainer(cfg, model, train, Poisoned(test) if poison else test, out, val_set=val).fit()


def test_best_on_val_never_reads_the_test_split(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 3, "eval.every": 1, "train.lr": 5e-3,
                              "model.ttsa.enabled": False, "data.val_fraction": 0.25})
    clean, poisoned = _fit(cfg, tmp_path / "clean", False), _fit(cfg, tmp_path / "poisoned", True)
    assert clean.last != poisoned.last  # the poisoning reaches every test number ...
    assert clean.best_val_epoch == poisoned.best_val_epoch  # ... but not the validation choice
    val_curve = lambda o: [h["val/composite"] for h in o.history]  # noqa: E731
    assert val_curve(clean) == val_curve(poisoned) and len(val_curve(clean)) == 3
    assert clean.val_last == poisoned.val_last
    # best_on_val reports the test metrics of the epoch validation chose
    chosen = next(h for h in poisoned.history if h["epoch"] == poisoned.best_val_epoch)
    assert poisoned.best_on_val["image_auroc"] == chosen["image_auroc"]
