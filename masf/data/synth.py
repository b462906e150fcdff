"""The synthetic dataset in MVTec AD layout: masf-bench's embedded default, since MVTec AD cannot be shipped.

``generate_dataset`` writes, for each of the 15 MVTec AD category names, a
procedurally drawn texture or object (see ``synth_textures``, ``synth_objects``
and ``synth_parts``) with 3-4 kinds of defect that fit it, and exact masks:
a mask is the set of pixels that the defect changed by more than
``MASK_THRESHOLD``. Every image is drawn from its own random generator seeded
by (seed, category, split, index), so the same arguments write byte-identical
files in any process and in any order.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from masf.data import MVTEC_CATEGORIES
from masf.data.synth_draw import F32, CategorySpec, canvas
from masf.data.synth_objects import OBJECTS
from masf.data.synth_parts import PARTS
from masf.data.synth_textures import TEXTURES
from masf.errors import DataError

SPECS: dict[str, CategorySpec] = {**TEXTURES, **OBJECTS, **PARTS}
MASK_THRESHOLD = 0.06  # a pixel is defective when a channel moved by more than ~15/255: visible, not a faint halo
GOOD_FRACTION = 0.4  # share of good images in a category's test split, as in MVTec AD
_LAYOUT = {"train", "test", "ground_truth"}  # all a category folder may hold before it is replaced


def defect_kinds(category: str) -> list[str]:
    """The defect folder names of a category, in the order they are written."""
    return list(_spec(category).defects)


def _spec(category: str) -> CategorySpec:
    if category not in SPECS:
        raise DataError(f"unknown category '{category}' (choose from: {', '.join(MVTEC_CATEGORIES)})")
    return SPECS[category]


def _rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    # crc32, not hash(): str hashes change from process to process
    key = [seed % (1 << 63), zlib.crc32(category.encode()), zlib.crc32(split.encode()), index]
    return np.random.default_rng(key)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def synthesize(category: str, kind: Optional[str], rng: np.random.Generator, size: int) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """Draw one item: (image (H, W, 3) uint8, mask (H, W) uint8 0/255 or None when good, the same item without the defect).

    The defect-free twin shares the item's geometry, texture and sensor noise, so
    ``image != twin`` exactly where the defect is.
    """
    spec = _spec(category)
    c = canvas(size)
    scene = spec.render(c, rng)
    noise = rng.normal(0, spec.noise, scene.img.shape).astype(F32)
    twin = _to_u8(scene.img + noise)
    if kind is None:
        return twin, None, twin
    if kind not in spec.defects:
        raise DataError(f"category '{category}' has no defect kind '{kind}' (it has: {', '.join(spec.defects)})")
    need = max(1, round(size * size * 4e-4))  # ~7 pixels at 128: a defect one can see
    for attempt in range(8):
        # a draw that came out too faint (e.g. on a dark patch) is redrawn a little stronger
        img = spec.defects[kind](c, scene, rng, spec.strength * (1 + 0.25 * attempt))
        out = _to_u8(img + noise)
        mask = _changed(out, twin)
        if mask.sum() >= need:
            break
    if mask.sum() == 0:
        # only on tiny images: mark one pixel so that every defect image has a defect
        y, x = (int(v) for v in rng.integers(0, size, 2))
        out[y, x] = np.where(twin[y, x] > 127, 0, 255)
        mask = _changed(out, twin)
    return out, mask.astype(np.uint8) * 255, twin


def _changed(out: np.ndarray, twin: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the written image differs from its defect-free twin by more than the threshold."""
    return np.abs(out.astype(np.int16) - twin.astype(np.int16)).max(axis=-1) > MASK_THRESHOLD * 255


def split_counts(n_test: int, kinds: list[str]) -> tuple[int, dict[str, int]]:
    """How many good and how many of each defect kind a test split of ``n_test`` images holds."""
    n_good = max(1, round(GOOD_FRACTION * n_test)) if n_test > 0 else 0
    n_bad = n_test - n_good
    if n_bad < len(kinds):
        n_bad = min(len(kinds), n_test - 1)  # one of each kind if there is room, and always one good image
        n_good = n_test - n_bad
    per = {kind: n_bad // len(kinds) + (i < n_bad % len(kinds)) for i, kind in enumerate(kinds)}
    return n_good, per


def _clear(root: Path) -> None:
    """Remove a category folder this call is about to rewrite, but never anything that is not one."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"{root} exists and is not a folder; refusing to overwrite it")
    extra = sorted(p.name for p in root.iterdir() if p.name not in _LAYOUT)
    if extra:
        raise DataError(f"{root} holds {', '.join(extra[:3])}, which is not MVTec layout; refusing to delete it")
    shutil.rmtree(root)


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)  # fast; PNG is lossless at any level


def _write_category(out: Path, category: str, seed: int, size: int, n_train: int, n_test: int) -> dict[str, int]:
    root = out / category
    _clear(root)
    kinds = defect_kinds(category)
    n_good, per_kind = split_counts(n_test, kinds)
    counts: dict[str, int] = {}
    jobs = [("train", "good", n_train), ("test", "good", n_good)] + [("test", k, n) for k, n in per_kind.items()]
    for split, kind, n in jobs:
        if n == 0:
            continue
        folder = root / split / kind
        folder.mkdir(parents=True)
        width = max(3, len(str(n - 1)))
        for i in range(n):
            name = f"{i:0{width}d}"
            rng = _rng(seed, category, f"{split}/{kind}", i)
            img, mask, _ = synthesize(category, None if kind == "good" else kind, rng, size)
            _save(img, folder / f"{name}.png")
            if mask is not None:
                gt = root / "ground_truth" / kind
                gt.mkdir(parents=True, exist_ok=True)
                _save(mask, gt / f"{name}_mask.png")
        counts[f"{split}/{kind}"] = n
    return counts


_README = """\
Synthetic anomaly-detection data in the MVTec AD folder layout, written by masf-bench
(masf.data.synth.generate_dataset). It is NOT MVTec AD: every image is drawn procedurally.

Categories carry the 15 MVTec AD names. Textures (carpet, grid, leather, tile, wood) fill
the image; objects (bottle, cable, capsule, hazelnut, metal_nut, pill, screw, toothbrush,
transistor, zipper) sit centred on a plain background. Normal images vary in position,
rotation, colour, lighting and texture noise. Defects are scratches, cracks, holes, stains,
foreign particles, missing, swapped or misplaced parts and colour changes, 3-4 kinds per
category, with exact ground-truth masks (the pixels the defect changed by more than
{threshold:.0f}/255).

Layout:   CATEGORY/train/good/NNN.png                 normal training images
          CATEGORY/test/good/NNN.png                  normal test images
          CATEGORY/test/DEFECT/NNN.png                defective test images
          CATEGORY/ground_truth/DEFECT/NNN_mask.png   masks, 8-bit, 0 = normal, 255 = defect

Last written: categories {categories}; seed {seed}; {size}x{size} RGB PNG; {n_train} training
and {n_test} test images per category. The same arguments write byte-identical files.
"""


def generate_dataset(
    out: Path,
    categories: Optional[list[str]] = None,
    seed: int = 0,
    size: int = 128,
    n_train: int = 20,
    n_test: int = 20,
) -> dict[str, dict[str, int]]:
    """Write the synthetic dataset under ``out``; return category -> {"train/good": n, "test/<kind>": n, ...}.

    Only the folders of the requested categories are replaced; anything else in
    ``out`` is left alone.
    """
    names = list(MVTEC_CATEGORIES) if categories is None else list(dict.fromkeys(categories))
    for name in names:
        _spec(name)  # unknown names fail before anything is written
    if size < 8:
        raise DataError(f"size {size} is too small for the synthetic images (at least 8 pixels)")
    if n_train < 1 or n_test < 1:
        raise DataError(f"n_train and n_test must be at least 1 (got {n_train} and {n_test})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = {name: _write_category(out, name, seed, size, n_train, n_test) for name in names}
    text = _README.format(threshold=MASK_THRESHOLD * 255, categories=", ".join(names), seed=seed, size=size, n_train=n_train, n_test=n_test)
    (out / "README.txt").write_text(text)
    return written
