"""Harder and more numerous pseudo-anomalies (data.pseudo, data.pseudo_per_normal): the default split is the one of
before, hard defects are smaller and fainter with exact masks, several per normal are distinct and labelled."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from masf.config import ConfigError, build_config, flatten
from masf.data.mvtec import MVTecDataset
from masf.data.pseudo import MIN_AREA_HARD, PSEUDO_KINDS, ValidationSet, changed, pseudo_anomaly
from masf.fingerprint import ADDED_KEYS, config_fingerprint
from masf.trial.run import build_datasets


def _normals(root, category="carpet", indices=(0, 3, 5), size=64):
    return MVTecDataset(root, category, "train", image_size=size, indices=list(indices))


def _digest(val: ValidationSet) -> str:
    h = hashlib.sha256()
    for i in range(len(val.normals)):
        image, mask, kind = val.pseudo(i)
        h.update(image.tobytes())
        h.update(mask.tobytes())
        h.update(kind.encode())
    return h.hexdigest()[:16]


def _texture(size: int, gray: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([(yy * 2) % 256, (xx * 3) % 256, ((yy + xx) * 5) % 256], -1).astype(np.uint8)
    return np.repeat(img[..., 2:], 3, -1) if gray else img


def _stats(val: ValidationSet) -> tuple[float, float]:
    """Mean mask area (share of the image) and mean absolute change inside the mask, over every pseudo-anomaly."""
    areas, change = [], []
    for d in range(val.per_normal):
        for i in range(len(val.normals)):
            image, mask, _ = val.pseudo(i, d)
            base = val.normals._read(i)[0]
            areas.append(mask.mean())
            change.append(np.abs(image.astype(int) - base.astype(int)).max(-1)[mask > 0].mean())
    return float(np.mean(areas)), float(np.mean(change))


def test_the_default_split_is_the_one_of_before(synth_root):
    default = ValidationSet(_normals(synth_root), seed=4)
    explicit = ValidationSet(_normals(synth_root), seed=4, difficulty="standard", per_normal=1)
    assert len(default) == len(explicit) == 6 and default.labels().tolist() == explicit.labels().tolist() == [0, 0, 0, 1, 1, 1]
    for j in range(6):
        a, b = default[j], explicit[j]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert (a["label"], a["defect_type"], a["path"]) == (b["label"], b["defect_type"], b["path"])
    # the draws of the function as it was called before: kind i mod 7, seeded by (seed, i, 0x5EED)
    for i in (0, 2):
        image, _ = default.normals._read(i)
        want, want_mask = pseudo_anomaly(image, PSEUDO_KINDS[i % len(PSEUDO_KINDS)], np.random.default_rng([4, i, 0x5EED]))
        got, got_mask, kind = default.pseudo(i)
        assert kind == PSEUDO_KINDS[i] and np.array_equal(got, want) and np.array_equal(got_mask, want_mask)
        assert default[3 + i]["defect_type"] == f"pseudo_{kind}"
    # digests of the split drawn by the code before data.pseudo and data.pseudo_per_normal existed
    assert _digest(default) == "a9076cda5274d3f1"
    assert _digest(ValidationSet(_normals(synth_root, "bottle", range(8)), seed=0)) == "4cbe2a3d41501653"


@pytest.mark.parametrize("kind", PSEUDO_KINDS)
def test_hard_masks_are_exactly_what_changed_and_gray_stays_gray(kind):
    for size in (64, 45):  # odd sizes too
        for gray in (False, True):
            img = _texture(size, gray)
            out, mask = pseudo_anomaly(img, kind, np.random.default_rng([size, 7]), difficulty="hard")
            assert out.shape == img.shape and out.dtype == np.uint8 and mask.shape == img.shape[:2]
            np.testing.assert_array_equal(mask, changed(out, img))
            assert mask.sum() >= max(1, round(MIN_AREA_HARD * size * size))  # small, never invisible
            if gray:
                assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
    with pytest.raises(ValueError, match="difficulty"):
        pseudo_anomaly(_texture(32), kind, np.random.default_rng(0), difficulty="easy")


def test_hard_split_masks_are_exact_on_the_synthetic_normals(synth_root):
    val = ValidationSet(_normals(synth_root, "bottle", range(4)), seed=1, difficulty="hard", per_normal=2)
    for d in range(2):
        for i in range(4):
            image, mask, _ = val.pseudo(i, d)
            np.testing.assert_array_equal(mask, changed(image, val.normals._read(i)[0]))
            assert mask.sum() > 0


def test_hard_defects_are_smaller_and_fainter_on_the_same_normals(synth_root):
    for category in ("bottle", "carpet"):
        normals = _normals(synth_root, category, range(8))
        std_area, std_change = _stats(ValidationSet(normals, seed=0, per_normal=len(PSEUDO_KINDS)))
        hard_area, hard_change = _stats(ValidationSet(normals, seed=0, difficulty="hard", per_normal=len(PSEUDO_KINDS)))
        # fainter above all, and smaller (at real 256 px images: median area about 0.12 % against 0.5 %,
        # change inside the mask about 40-50 against 70-77 grey levels)
        assert hard_area < 0.6 * std_area, (category, hard_area, std_area)
        assert hard_change < 0.85 * std_change, (category, hard_change, std_change)


def test_several_pseudo_anomalies_per_normal(synth_root):
    n, k = 3, 3
    val = ValidationSet(_normals(synth_root), seed=4, per_normal=k)
    assert len(val) == n + n * k and val.labels().tolist() == [0] * n + [1] * (n * k)
    items = [val[j] for j in range(len(val))]
    assert all(it["label"] == 0 and it["mask"].sum() == 0 for it in items[:n])
    assert all(it["label"] == 1 and it["mask"].sum() > 0 and it["defect_type"].startswith("pseudo_") for it in items[n:])
    for i in range(n):
        mine = [items[n + d * n + i] for d in range(k)]  # draw by draw: normal i's draws are n apart
        assert all(it["path"] == items[i]["path"] for it in mine)
        assert len({it["defect_type"] for it in mine}) == k  # different kinds
        images = [items[i]["image"]] + [it["image"] for it in mine]
        assert all(not torch.equal(a, b) for x, a in enumerate(images) for b in images[x + 1 :])  # all distinct
        for it in mine:  # every mask marks exactly what differs from the normal
            moved = (it["image"] - items[i]["image"]).abs().amax(0) > 1e-6
            assert torch.equal(moved[it["mask"][0] > 0], torch.ones(int(it["mask"].sum()), dtype=torch.bool))
    # draw 0 of every normal is the split of per_normal=1
    single = ValidationSet(_normals(synth_root), seed=4)
    assert all(torch.equal(items[n + i]["image"], single[n + i]["image"]) for i in range(n))
    # draw 1 is seeded by (seed, image index, draw number)
    image, _ = val.normals._read(2)
    want, _ = pseudo_anomaly(image, PSEUDO_KINDS[3], np.random.default_rng([4, 2, 0x5EED, 1]))
    assert np.array_equal(val.pseudo(2, 1)[0], want)
    with pytest.raises(IndexError):
        val[len(val)]
    with pytest.raises(IndexError):
        val.pseudo(0, k)
    with pytest.raises(ValueError):
        ValidationSet(_normals(synth_root), per_normal=0)


def test_hard_on_a_gray_non_square_original_at_an_odd_size(tmp_path):
    good = tmp_path / "plate" / "train" / "good"
    good.mkdir(parents=True)
    yy, xx = np.mgrid[:50, :80]
    for i in range(2):
        Image.fromarray(((yy * 3 + xx * (2 + i)) % 256).astype(np.uint8), mode="L").save(good / f"{i:03d}.png")
    normals = MVTecDataset(tmp_path, "plate", "train", image_size=37, indices=[0, 1])
    val = ValidationSet(normals, seed=0, difficulty="hard", per_normal=len(PSEUDO_KINDS))
    assert len(val) == 2 * (1 + len(PSEUDO_KINDS))
    for d in range(len(PSEUDO_KINDS)):
        for i in range(2):
            image, mask, _ = val.pseudo(i, d)
            assert image.shape == (37, 37, 3) and mask.shape == (37, 37)
            assert np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2])
            np.testing.assert_array_equal(mask, changed(image, normals._read(i)[0]))
            assert mask.sum() > 0


def test_config_keys_are_validated_and_reach_the_split(synth_root, tiny):
    with pytest.raises(ConfigError) as err:
        build_config(None, {"data.pseudo_per_normal": 0})
    assert str(err.value) == "data.pseudo_per_normal: must be >= 1 (got 0)"
    with pytest.raises(ConfigError, match="^data.pseudo: "):
        build_config(None, {"data.pseudo": "easy"})
    cfg = build_config(None, {**tiny(synth_root), "data.val_fraction": 0.25, "data.calibration_share": 0.0,
                              "data.pseudo": "hard", "data.pseudo_per_normal": 2})
    val = build_datasets(cfg, (0.5,) * 3, (0.2,) * 3)[1]
    assert val.difficulty == "hard" and val.per_normal == 2 and len(val) == 3 * len(val.normals) == 6
    plain = build_datasets(build_config(None, {**tiny(synth_root), "data.val_fraction": 0.25}), (0.5,) * 3, (0.2,) * 3)[1]
    assert plain.difficulty == "standard" and plain.per_normal == 1


def test_default_fingerprint_is_unchanged_by_the_new_keys():
    assert ADDED_KEYS["data.pseudo"] == "standard" and ADDED_KEYS["data.pseudo_per_normal"] == 1
    cfg = build_config(None, {})
    before = {k: v for k, v in flatten(cfg.to_dict()).items() if k not in ("data.pseudo", "data.pseudo_per_normal")}
    assert config_fingerprint(cfg) == config_fingerprint(before)  # as if the keys did not exist
    assert config_fingerprint(build_config(None, {"data.pseudo": "hard"})) != config_fingerprint(cfg)
    assert config_fingerprint(build_config(None, {"data.pseudo_per_normal": 2})) != config_fingerprint(cfg)
