"""The synthetic dataset: MVTec AD layout, exact masks, determinism, variety, and safe overwriting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masf.data import MVTEC_CATEGORIES
from masf.data.synth import MASK_THRESHOLD, _rng, defect_kinds, generate_dataset, split_counts, synthesize
from masf.errors import DataError

TINY = {"size": 64, "n_train": 2, "n_test": 5}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    out = tmp_path_factory.mktemp("synth")
    written = generate_dataset(out, categories=["carpet", "cable", "screw", "zipper"], seed=3, size=64, n_train=3, n_test=10)
    return out, written


def test_layout_matches_mvtec(small: tuple[Path, dict[str, dict[str, int]]]) -> None:
    out, written = small
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "cable", "carpet", "screw", "zipper"]
    assert "MVTec AD folder layout" in (out / "README.txt").read_text()
    for category, counts in written.items():
        root = out / category
        assert counts["train/good"] == 3 == len(list((root / "train" / "good").glob("*.png")))
        assert sum(n for key, n in counts.items() if key.startswith("test/")) == 10
        assert counts["test/good"] >= 1
        assert not (root / "ground_truth" / "good").exists()  # good images have no masks
        kinds = [key.split("/", 1)[1] for key in counts if key.startswith("test/") and key != "test/good"]
        assert sorted(kinds) == sorted(defect_kinds(category))  # every kind present when n_test allows
        for kind in kinds:
            images = sorted((root / "test" / kind).glob("*.png"))
            assert len(images) == counts[f"test/{kind}"]
            assert [p.name for p in images] == [f"{i:03d}.png" for i in range(len(images))]
            for image_file in images:
                image = Image.open(image_file)
                mask = Image.open(root / "ground_truth" / kind / f"{image_file.stem}_mask.png")
                assert image.mode == "RGB" and image.size == (64, 64)
                assert mask.mode == "L" and mask.size == image.size
                values = np.asarray(mask)
                assert set(np.unique(values)) <= {0, 255}
                assert (values == 255).sum() >= 1


def test_split_counts() -> None:
    assert split_counts(20, ["a", "b", "c", "d"]) == (8, {"a": 3, "b": 3, "c": 3, "d": 3})
    assert split_counts(20, ["a", "b", "c"]) == (8, {"a": 4, "b": 4, "c": 4})
    assert split_counts(5, ["a", "b", "c", "d"]) == (1, {"a": 1, "b": 1, "c": 1, "d": 1})  # one of each kind fits
    assert split_counts(3, ["a", "b", "c", "d"]) == (1, {"a": 1, "b": 1, "c": 0, "d": 0})  # but one good always
    assert split_counts(1, ["a", "b"]) == (1, {"a": 0, "b": 0})


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    args = {"categories": ["leather", "transistor"], **TINY}
    generate_dataset(tmp_path / "a", seed=7, **args)
    generate_dataset(tmp_path / "b", seed=7, **args)
    generate_dataset(tmp_path / "c", seed=8, **args)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if k.endswith(".png") and a[k] != c[k]]
    assert len(differing) > len(a) // 2


def test_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    # string hashing is randomised per process; the generator must not depend on it
    generate_dataset(tmp_path / "here", categories=["pill"], seed=1, **TINY)
    code = (
        "import sys; from pathlib import Path; from masf.data.synth import generate_dataset; "
        "generate_dataset(Path(sys.argv[1]), categories=['pill'], seed=1, size=64, n_train=2, n_test=5)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env={"PYTHONHASHSEED": "123"})
    assert _files(tmp_path / "here") == _files(tmp_path / "there")


@pytest.mark.parametrize("category", MVTEC_CATEGORIES)
def test_mask_is_exactly_what_the_defect_changed(category: str) -> None:
    for kind in defect_kinds(category):
        for index in range(2):
            image, mask, twin = synthesize(category, kind, _rng(0, category, kind, index), 96)
            assert mask is not None and image.shape == twin.shape == (96, 96, 3)
            on = mask == 255
            assert 0 < on.sum() < on.size * 0.3, (kind, on.mean())
            diff = np.abs(image.astype(int) - twin.astype(int)).max(axis=-1)
            assert diff[on].min() > MASK_THRESHOLD * 255, kind  # every masked pixel visibly changed
            assert diff[~on].max() <= MASK_THRESHOLD * 255, kind  # and nothing else did


def test_good_items_have_no_mask_and_equal_their_twin() -> None:
    image, mask, twin = synthesize("bottle", None, _rng(0, "bottle", "test/good", 0), 64)
    assert mask is None
    assert np.array_equal(image, twin)


@pytest.mark.parametrize("category", MVTEC_CATEGORIES)
def test_normal_images_vary(category: str) -> None:
    images = [synthesize(category, None, _rng(0, category, "train/good", i), 64)[0].astype(int) for i in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(images[i] - images[j]).mean() > 1.0  # more than sensor noise apart


def test_every_category_has_several_defect_kinds() -> None:
    for category in MVTEC_CATEGORIES:
        kinds = defect_kinds(category)
        assert 2 <= len(kinds) <= 4
        assert len(set(kinds)) == len(kinds)
        assert "good" not in kinds
        assert all(k.replace("_", "").isalpha() and k.islower() for k in kinds)


def test_unknown_category_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'carpets'") as info:
        generate_dataset(tmp_path, categories=["carpet", "carpets"], **TINY)
    assert "carpet, grid" in str(info.value)  # lists the known names
    assert list(tmp_path.iterdir()) == []


def test_all_fifteen_tiny_categories_are_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    written = generate_dataset(tmp_path, **TINY)
    elapsed = time.perf_counter() - start
    assert list(written) == list(MVTEC_CATEGORIES)
    for category, counts in written.items():
        assert counts["train/good"] == 2
        assert sum(n for key, n in counts.items() if key.startswith("test/")) == 5
        assert counts["test/good"] >= 1
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_subset_writes_and_replaces_only_its_folders(tmp_path: Path) -> None:
    generate_dataset(tmp_path, categories=["wood"], seed=0, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.txt", "wood"]
    generate_dataset(tmp_path, categories=["tile"], seed=0, **TINY)
    tile_before = _files(tmp_path / "tile")
    wood_before = _files(tmp_path / "wood")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.txt", "tile", "wood"]
    (tmp_path / "wood" / "test" / "good" / "999.png").write_bytes(b"stale")
    generate_dataset(tmp_path, categories=["wood"], seed=1, **TINY)
    wood_after = _files(tmp_path / "wood")
    assert "test/good/999.png" not in wood_after  # rewritten from scratch, no stale files
    assert wood_after.keys() == wood_before.keys() and wood_after != wood_before
    assert _files(tmp_path / "tile") == tile_before


def test_refuses_to_delete_a_folder_that_is_not_a_category(tmp_path: Path) -> None:
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="notes.txt"):
        generate_dataset(tmp_path, categories=["grid"], **TINY)
    assert (tmp_path / "grid" / "notes.txt").read_text() == "mine"


def test_rejects_sizes_it_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="size"):
        generate_dataset(tmp_path, categories=["pill"], size=4)
    with pytest.raises(DataError, match="n_test"):
        generate_dataset(tmp_path, categories=["pill"], n_test=0)
