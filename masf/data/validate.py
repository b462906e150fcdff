"""Dataset validation: one pass that reports every problem at once, each naming its file.

Checks: the root and category exist; train/good and test are not empty and
test holds both good and defective images; every image decodes (``deep``:
every pixel, which catches truncated files); every defective image has a mask
of the same size whose values are binary. Masks without an image and files
that are not images are reported as warnings (they do not fail the check).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from masf.data.mvtec import (
    GOOD,
    IMAGE_EXTENSIONS,
    Sample,
    check_category_name,
    expected_mask_path,
    image_files,
    list_categories,
    list_samples,
)
from masf.errors import DataError

BINARY_VALUE_SETS = ({0, 255}, {0, 1}, {0, 65535})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file or folder."""

    path: str
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """What :func:`validate_dataset` found: image counts and every problem."""

    root: str
    categories: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # category -> (split, defect_type) -> number of image files
    counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def n_images(self) -> int:
        return sum(n for per in self.counts.values() for n in per.values())


# ------------------------------------------------------------------ single files


def _decode_error(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (unrecognised format)"
    if "truncated" in text.lower():
        return "cannot decode image (truncated)"
    return f"cannot decode image ({text.splitlines()[0] if text else type(exc).__name__})"


def _open(path: Path, deep: bool) -> tuple[Optional[Image.Image], Optional[str]]:
    """Open ``path`` (``deep``: decode every pixel); (image, None) or (None, why)."""
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as im:  # closes the file; pixels loaded by load() stay
            if deep:
                im.load()
            return im, None
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, _decode_error(exc)


def _mask_values(im: Image.Image) -> np.ndarray:
    """Distinct pixel values of a mask (palettes resolved, alpha ignored)."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        im = im.convert(im.mode[:-1])
    arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.uint8:
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=256))  # much faster than np.unique
    return np.unique(arr)


def _describe_values(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values.tolist()[:6])
    if len(values) <= 6:
        return f"mask is not binary (values {shown}), expected 0 and 255 (or 0 and 1)"
    return f"mask has {len(values)} distinct values ({values.min()}..{values.max()}), expected 0 and 255 (or 0 and 1)"


def check_sample(sample: Sample, cat_dir: Path, deep: bool = True) -> list[Problem]:
    """Problems of one image and, for a defective image, of its mask."""
    problems: list[Problem] = []
    image, why = _open(sample.image_path, deep)
    if why:
        problems.append(Problem(str(sample.image_path), why))
    if sample.label == 0:
        return problems
    if sample.mask_path is None:
        expected = expected_mask_path(cat_dir, sample.defect_type, sample.image_path)
        problems.append(Problem(str(sample.image_path), f"no ground-truth mask (expected {expected})"))
        return problems
    mask, why = _open(sample.mask_path, deep)
    if why:
        problems.append(Problem(str(sample.mask_path), why))
        return problems
    assert mask is not None
    if image is not None and mask.size != image.size:
        (mw, mh), (iw, ih) = mask.size, image.size
        problems.append(Problem(str(sample.mask_path), f"mask is {mw}x{mh} but its image {sample.image_path.name} is {iw}x{ih}"))
    if deep:
        values = _mask_values(mask)
        if set(values.tolist()) == {0}:
            problems.append(Problem(str(sample.mask_path), "mask is all zero although its image is defective", "warning"))
        elif not any(set(values.tolist()) <= allowed for allowed in BINARY_VALUE_SETS):
            problems.append(Problem(str(sample.mask_path), _describe_values(values)))
    return problems


# ------------------------------------------------------------------ folders


def _stray_files(folder: Path) -> list[Problem]:
    """Warnings for visible files in ``folder`` that are not accepted images."""
    if not folder.is_dir():
        return []
    accepted = ", ".join(e[1:] for e in IMAGE_EXTENSIONS)
    return [
        Problem(str(p), f"not an accepted image type ({accepted}); ignored", "warning")
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS
    ]


def _orphan_masks(cat_dir: Path, test: list[Sample]) -> list[Problem]:
    gt = cat_dir / "ground_truth"
    if not gt.is_dir():
        return []
    used = {s.mask_path for s in test if s.mask_path is not None}
    problems = []
    for folder in sorted(p for p in gt.iterdir() if p.is_dir() and p.name != GOOD and not p.name.startswith(".")):
        if not (cat_dir / "test" / folder.name).is_dir():
            problems.append(Problem(str(folder), f"ground-truth folder has no test/{folder.name} folder", "warning"))
            continue
        for mask in image_files(folder):
            if mask not in used:
                problems.append(Problem(str(mask), "mask matches no test image (expected NAME_mask.EXT for test image NAME)", "warning"))
    return problems


def _structure(cat_dir: Path, train: list[Sample], test: list[Sample]) -> list[Problem]:
    problems = []
    train_good = cat_dir / "train" / GOOD
    if not train_good.is_dir():
        problems.append(Problem(str(train_good), "missing folder: training needs normal images in train/good"))
    elif not train:
        problems.append(Problem(str(train_good), "no training images (folder is empty)"))
    for p in sorted((cat_dir / "train").glob("*")) if (cat_dir / "train").is_dir() else []:
        if p.is_dir() and p.name != GOOD and not p.name.startswith("."):
            problems.append(Problem(str(p), "only train/good is used for training; this folder is ignored", "warning"))
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        problems.append(Problem(str(test_dir), "missing folder: evaluation needs test/good and test/DEFECT images"))
    elif not test:
        problems.append(Problem(str(test_dir), "no test images"))
    else:
        n_good = sum(1 for s in test if s.label == 0)
        if n_good == 0:
            problems.append(Problem(str(test_dir / GOOD), "no good test images; image AUROC needs both good and defective test images"))
        if n_good == len(test):
            problems.append(Problem(str(test_dir), "no defective test images (test/DEFECT); image AUROC needs both good and defective test images"))
    return problems


def _counts(train: list[Sample], test: list[Sample]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for split, samples in (("train", train), ("test", test)):
        for s in samples:
            counts[(split, s.defect_type)] = counts.get((split, s.defect_type), 0) + 1
    return counts


def validate_dataset(root: str | Path, category: Optional[str] = None, deep: bool = True) -> Report:
    """Check ``category`` (default: every category under ``root``); never raises on bad data."""
    root = Path(root)
    report = Report(root=str(root))
    if not root.exists():
        report.problems.append(Problem(str(root), "dataset root does not exist"))
        return report
    if not root.is_dir():
        report.problems.append(Problem(str(root), "dataset root is not a folder"))
        return report
    found = list_categories(root)
    if category is not None:
        try:
            check_category_name(category)
        except DataError as exc:
            report.problems.append(Problem(str(root), str(exc)))
            return report
        if category not in found and (root / category).is_dir():
            report.problems.append(Problem(str(root / category), "not a category folder (it has no train/ or test/ folder)"))
            return report
        if category not in found:
            listing = ", ".join(found) if found else "none"
            report.problems.append(Problem(str(root), f"unknown category '{category}' (found: {listing})"))
            return report
        categories = [category]
    else:
        categories = found
        if not categories:
            report.problems.append(Problem(str(root), "no categories found (expected ROOT/CATEGORY/train/good, ROOT/CATEGORY/test/...)"))
            return report
    report.categories = categories

    jobs: list[tuple[Sample, Path]] = []
    for name in categories:
        cat_dir = root / name
        train = list_samples(root, name, "train")
        test = list_samples(root, name, "test")
        report.counts[name] = _counts(train, test)
        report.problems += _structure(cat_dir, train, test)
        for folder in [cat_dir / "train" / GOOD] + sorted(p for p in (cat_dir / "test").glob("*") if p.is_dir()):
            report.problems += _stray_files(folder)
        report.problems += _orphan_masks(cat_dir, test)
        jobs += [(s, cat_dir) for s in train + test]

    # PIL releases the GIL while decoding, so threads make a deep pass several times faster
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for problems in pool.map(lambda job: check_sample(job[0], job[1], deep), jobs):
            report.problems += problems
    return report


def validate_or_raise(root: str | Path, category: Optional[str] = None, deep: bool = True) -> Report:
    """:func:`validate_dataset`, raising DataError with the first error and how many others."""
    report = validate_dataset(root, category, deep)
    errors = report.errors
    if errors:
        command = f"masf-bench data check {root}" + (f" --category {category}" if category else "")
        more = f"and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}; " if len(errors) > 1 else ""
        raise DataError(f"{errors[0]} ({more}run `{command}`)")
    return report
