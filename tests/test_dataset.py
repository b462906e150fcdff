"""MVTecDataset on tiny datasets written in tmp_path, and on the real data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from masf.data.mvtec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MVTecDataset,
    category_dir,
    denormalize,
    list_categories,
    list_samples,
    subset_indices,
)
from masf.errors import DataError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)


def expected(rgb: tuple[int, int, int]) -> np.ndarray:
    return (np.array(rgb, dtype=np.float32) / 255.0 - MEAN) / STD


def save(path: Path, im: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def uniform(mode: str, size: tuple[int, int], value) -> Image.Image:
    return Image.new(mode, size, value)


def square_mask(size: tuple[int, int], high: int = 255) -> Image.Image:
    """Top-left quarter set to ``high``."""
    w, h = size
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[: h // 2, : w // 2] = high
    return Image.fromarray(arr)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """One category 'widget' with images of mixed modes and sizes."""
    cat = tmp_path / "widget"
    train = cat / "train" / "good"
    save(train / "000.png", uniform("RGB", (40, 30), (10, 128, 250)))
    save(train / "001.png", uniform("L", (64, 64), 100))
    save(train / "002.png", uniform("RGBA", (40, 30), (50, 60, 70, 0)))  # alpha must be dropped
    save(train / "003.png", Image.fromarray(np.full((30, 40), 200 * 257, dtype=np.uint16)))  # I;16
    pal = Image.new("P", (64, 64), 1)
    pal.putpalette([0, 0, 0, 30, 140, 220] + [0] * 762)
    save(train / "004.png", pal)
    save(train / "005.JPG", uniform("RGB", (64, 64), (128, 128, 128)))
    (train / "notes.txt").write_text("not an image")
    test = cat / "test"
    for i in range(6):
        save(test / "good" / f"{i:03d}.png", uniform("RGB", (64, 64), (20 * i, 0, 0)))
    gt = cat / "ground_truth"
    for i in range(3):
        save(test / "crack" / f"{i:03d}.png", uniform("RGB", (64, 64), (0, 200, 0)))
        save(gt / "crack" / f"{i:03d}_mask.png", square_mask((64, 64)))
    for i in range(3):
        save(test / "hole" / f"{i:03d}.png", uniform("L", (40, 30), 7))
        save(gt / "hole" / f"{i:03d}_mask.png", square_mask((40, 30), high=1))  # 0/1 masks
    return tmp_path


def by_name(ds: MVTecDataset, name: str) -> dict:
    (index,) = [i for i, s in enumerate(ds.samples) if s.image_path.name == name]
    return ds[index]


def test_listing(root: Path):
    assert list_categories(root) == ["widget"]
    train = list_samples(root, "widget", "train")
    assert [s.image_path.name for s in train] == ["000.png", "001.png", "002.png", "003.png", "004.png", "005.JPG"]
    test = list_samples(root, "widget", "test")
    assert [s.defect_type for s in test] == ["crack"] * 3 + ["good"] * 6 + ["hole"] * 3
    assert all(s.mask_path is not None for s in test if s.label == 1)
    assert all(s.mask_path is None and s.label == 0 for s in test if s.defect_type == "good")
    assert test[0].mask_path == root / "widget" / "ground_truth" / "crack" / "000_mask.png"


def test_train_items_shapes_and_modes(root: Path):
    ds = MVTecDataset(root, "widget", "train", image_size=32)
    assert len(ds) == 6
    for item in (ds[i] for i in range(len(ds))):
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
        assert item["mask"].sum() == 0 and item["label"] == 0 and item["defect_type"] == "good"
    cases = {
        "000.png": (10, 128, 250),  # RGB
        "001.png": (100, 100, 100),  # L -> 3 channels
        "002.png": (50, 60, 70),  # RGBA, alpha dropped
        "003.png": (200, 200, 200),  # 16-bit grey scaled to 8 bit
        "004.png": (30, 140, 220),  # palette expanded
        "005.JPG": (128, 128, 128),  # upper-case extension, JPEG
    }
    for name, rgb in cases.items():
        image = by_name(ds, name)["image"].numpy()
        tol = 0.05 if name.endswith("JPG") else 1e-5
        np.testing.assert_allclose(image, np.broadcast_to(expected(rgb)[:, None, None], image.shape), atol=tol, err_msg=name)


def test_test_items_masks_and_labels(root: Path):
    ds = MVTecDataset(root, "widget", "test", image_size=16)
    assert len(ds) == 12
    assert ds.defect_types == ["crack", "good", "hole"]
    assert ds.labels().tolist() == [1, 1, 1] + [0] * 6 + [1, 1, 1]
    quarter = np.zeros((16, 16), dtype=np.float32)
    quarter[:8, :8] = 1
    for i in range(len(ds)):
        item = ds[i]
        mask = item["mask"].numpy()
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        if item["label"] == 0:
            assert mask.sum() == 0
        else:
            # 64x64 (0/255) and 40x30 (0/1) quarter masks both resize (nearest) to the top-left 8x8
            np.testing.assert_array_equal(mask[0], quarter, err_msg=item["path"])
    assert Path(ds[0]["path"]).name == "000.png" and ds[0]["defect_type"] == "crack"


def test_mask_nearest_resize_of_odd_shape(tmp_path: Path):
    cat = tmp_path / "c"
    save(cat / "train" / "good" / "0.png", uniform("RGB", (8, 8), 0))
    save(cat / "test" / "good" / "0.png", uniform("RGB", (8, 8), 0))
    save(cat / "test" / "bad" / "0.png", uniform("RGB", (8, 8), 0))
    arr = np.zeros((8, 8), dtype=np.uint8)
    arr[1, 2] = arr[5:7, 3:8] = 255
    save(cat / "ground_truth" / "bad" / "0_mask.png", Image.fromarray(arr))
    ds = MVTecDataset(tmp_path, "c", "test", image_size=16)
    mask = ds[0]["mask"][0].numpy()
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(arr > 0, 2, 0), 2, 1).astype(np.float32))


def test_max_images_subset(root: Path):
    a = MVTecDataset(root, "widget", "test", image_size=8, max_images=4, seed=3)
    b = MVTecDataset(root, "widget", "test", image_size=8, max_images=4, seed=3)
    assert [s.image_path for s in a.samples] == [s.image_path for s in b.samples]
    # 12 images (3 crack, 6 good, 3 hole): proportional share 1 / 2 / 1
    assert sorted(s.defect_type for s in a.samples) == ["crack", "good", "good", "hole"]
    seen = {tuple(s.image_path.name for s in MVTecDataset(root, "widget", "test", max_images=4, seed=k).samples) for k in range(8)}
    assert len(seen) > 1  # the seed matters
    two = MVTecDataset(root, "widget", "test", image_size=8, max_images=2, seed=0)
    assert sorted(two.labels().tolist()) == [0, 1]
    train = MVTecDataset(root, "widget", "train", image_size=8, max_images=3, seed=1)
    assert len(train) == 3 and train.samples == sorted(train.samples, key=lambda s: s.image_path.name)
    assert len(MVTecDataset(root, "widget", "train", max_images=100)) == 6


def test_subset_keeps_both_classes_when_one_is_rare():
    from masf.data.mvtec import Sample

    samples = [Sample(Path(f"g{i}"), 0, "good") for i in range(50)] + [Sample(Path("d"), 1, "crack")]
    picked = subset_indices(samples, 3, seed=0)
    assert len(picked) == 3 and 50 in picked
    samples = [Sample(Path("g"), 0, "good")] + [Sample(Path(f"d{i}"), 1, "crack") for i in range(50)]
    picked = subset_indices(samples, 3, seed=0)
    assert len(picked) == 3 and 0 in picked
    with pytest.raises(DataError, match="max_images"):
        subset_indices(samples, 0, seed=0)


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "", "a\\b", ".."])
def test_category_name_rejected(root: Path, name: str):
    with pytest.raises(DataError) as info:
        category_dir(root, name)
    assert repr(name) in str(info.value)
    with pytest.raises(DataError):
        MVTecDataset(root, name, "train")


def test_unknown_category(root: Path):
    with pytest.raises(DataError) as info:
        MVTecDataset(root, "bottle", "train")
    assert str(info.value) == f"unknown category 'bottle' in {root} (found: widget)"
    with pytest.raises(DataError, match="does not exist"):
        MVTecDataset(root / "nowhere", "widget", "train")


def test_corrupt_image_names_file(root: Path):
    bad = root / "widget" / "train" / "good" / "001.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    ds = MVTecDataset(root, "widget", "train", image_size=8)
    ds[0]  # the others still load
    with pytest.raises(DataError) as info:
        ds[1]
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_truncated_image_names_file(root: Path):
    path = root / "widget" / "test" / "good" / "002.png"
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    save(path, Image.fromarray(noisy))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ds = MVTecDataset(root, "widget", "test", image_size=8)
    index = [s.image_path for s in ds.samples].index(path)
    with pytest.raises(DataError, match="truncated") as info:
        ds[index]
    assert str(path) in str(info.value)


def test_missing_mask_and_mask_size(root: Path):
    mask = root / "widget" / "ground_truth" / "hole" / "001_mask.png"
    save(mask, square_mask((64, 64)))  # the image is 40x30
    ds = MVTecDataset(root, "widget", "test", image_size=8)
    with pytest.raises(DataError, match="mask is 64x64 but its image is 40x30") as info:
        ds[[s.mask_path for s in ds.samples].index(mask)]
    assert str(mask) in str(info.value)
    mask.unlink()
    with pytest.raises(DataError, match="no ground-truth mask") as info:
        MVTecDataset(root, "widget", "test")
    assert str(root / "widget" / "test" / "hole" / "001.png") in str(info.value)


def test_empty_split(tmp_path: Path):
    (tmp_path / "c" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        MVTecDataset(tmp_path, "c", "train")
    with pytest.raises(DataError, match="unknown split"):
        list_samples(tmp_path, "c", "val")


def test_cache_keeps_decoded_images(root: Path):
    cached = MVTecDataset(root, "widget", "train", image_size=8)
    plain = MVTecDataset(root, "widget", "train", image_size=8, cache=False)
    first, _ = cached[0], plain[0]
    cached.samples[0].image_path.unlink()
    assert torch.equal(cached[0]["image"], first["image"])  # served from memory
    with pytest.raises(DataError, match="not found"):
        plain[0]


def test_denormalize_round_trip(root: Path):
    ds = MVTecDataset(root, "widget", "train", image_size=8)
    out = denormalize(ds[0]["image"], ds.mean, ds.std)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out == np.array([10, 128, 250], dtype=np.uint8)).all()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")
@pytest.mark.parametrize(
    "category, n_train, n_good, n_defect",
    [("metal_plate", 54, 26, 71), ("wood", 70, 70, 71)],
)
def test_real_categories(category: str, n_train: int, n_good: int, n_defect: int):
    train = MVTecDataset(REAL, category, "train", image_size=64, cache=False)
    test = MVTecDataset(REAL, category, "test", image_size=64, cache=False)
    assert len(train) == n_train
    labels = test.labels()
    assert (labels == 0).sum() == n_good and (labels == 1).sum() == n_defect
    item = test[int(np.argmax(labels))]
    assert item["image"].shape == (3, 64, 64) and item["label"] == 1
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    assert train[0]["image"].shape == (3, 64, 64)


def test_mask_named_like_its_image(tmp_path: Path):
    cat = tmp_path / "c"
    save(cat / "train" / "good" / "0.png", uniform("RGB", (8, 8), 0))
    save(cat / "test" / "good" / "0.png", uniform("RGB", (8, 8), 0))
    save(cat / "test" / "bad" / "a.jpg", uniform("RGB", (8, 8), 0))
    save(cat / "ground_truth" / "bad" / "a.png", square_mask((8, 8)))
    (sample,) = [s for s in list_samples(tmp_path, "c", "test") if s.label == 1]
    assert sample.mask_path == cat / "ground_truth" / "bad" / "a.png"
