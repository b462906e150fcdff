"""Dataset validation: one pass that reports every problem at once, each naming its file.

The root is read in its layout (masf/data/layouts.py: named, or recognised from the folder).
Checks: the root and category exist; the training split (and a published validation split) is
not empty and the test split holds both good and defective images; what the layout itself can get
wrong (a VisA CSV row naming no file, a missing MVTec 3D-AD rgb folder, ...); every image decodes
(``deep``: every pixel, which catches truncated files); every defective image has a mask (every
file of a LOCO mask folder) of the same size, and, in layouts whose masks are binary, binary
values. Masks without an image and files that are not images are reported as warnings (they do
not fail the check).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from masf.data.layouts import LAYOUTS, Layout, resolve_layout
from masf.data.mvtec import GOOD, IMAGE_EXTENSIONS, Sample, check_category_name, image_files, mask_files
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
    layout: str = ""  # the layout the root was read in
    how: str = ""  # one line: which layout, and whether it was named or recognised
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


def _check_mask(path: Path, image: Optional[Image.Image], image_name: str, deep: bool, binary: bool) -> list[Problem]:
    mask, why = _open(path, deep)
    if why:
        return [Problem(str(path), why)]
    assert mask is not None
    problems = []
    if image is not None and mask.size != image.size:
        (mw, mh), (iw, ih) = mask.size, image.size
        problems.append(Problem(str(path), f"mask is {mw}x{mh} but its image {image_name} is {iw}x{ih}"))
    if deep:
        values = set(_mask_values(mask).tolist())
        if values == {0}:
            problems.append(Problem(str(path), "mask is all zero although its image is defective", "warning"))
        elif binary and not any(values <= allowed for allowed in BINARY_VALUE_SETS):
            problems.append(Problem(str(path), _describe_values(_mask_values(mask))))
    return problems


def check_sample(sample: Sample, cat_dir: Path, deep: bool = True, layout: Layout = LAYOUTS["mvtec_ad"]) -> list[Problem]:
    """Problems of one image and, for a defective image, of its mask (each file of a mask folder)."""
    problems: list[Problem] = []
    image, why = _open(sample.image_path, deep)
    if why:
        problems.append(Problem(str(sample.image_path), why))
    if sample.label == 0:
        return problems
    if sample.mask_path is None:
        expected = layout.expected_mask(cat_dir, sample)
        problems.append(Problem(str(sample.image_path), f"no ground-truth mask (expected {expected})"))
        return problems
    for path in mask_files(sample.mask_path):
        problems += _check_mask(path, image, sample.image_path.name, deep, layout.binary_masks)
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
    """MVTec AD layout: ground-truth folders without a test folder and masks that match no test image."""
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


def _structure(layout: Layout, cat_dir: Path, splits: dict[str, list[Sample]]) -> list[Problem]:
    """Empty splits, a test split without good or without defective images."""
    problems = []
    for split, samples in splits.items():
        folder = layout.split_folder(cat_dir, split)
        if folder.is_dir() and not samples:
            what = {"train": "training images (folder is empty)", "validation": "validation images (folder is empty)", "test": "test images"}
            problems.append(Problem(str(folder), f"no {what[split]}"))
    test = splits["test"]
    if test:
        where = layout.split_folder(cat_dir, "test")
        if not any(s.label == 0 for s in test):
            problems.append(Problem(str(where / layout.good_folder), "no good test images; image AUROC needs both good and defective test images"))
        if all(s.label == 0 for s in test):
            problems.append(Problem(str(where), "no defective test images; image AUROC needs both good and defective test images"))
    return problems


def _counts(splits: dict[str, list[Sample]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for split, samples in splits.items():
        for s in samples:
            counts[(split, s.defect_type)] = counts.get((split, s.defect_type), 0) + 1
    return counts


def _categories(report: Report, layout: Layout, root: Path, category: Optional[str]) -> list[str]:
    """The categories to check, or [] with the reason added to ``report``."""
    found = layout.categories(root)
    if category is None:
        if not found:
            report.problems.append(Problem(str(root), f"no categories found ({layout.title} layout: expected {layout.evidence})"))
        return found
    try:
        check_category_name(category)
    except DataError as exc:
        report.problems.append(Problem(str(root), str(exc)))
        return []
    if category not in found and (root / category).is_dir():
        report.problems.append(Problem(str(root / category), f"not a {layout.title} category folder (expected {layout.evidence})"))
    elif category not in found:
        report.problems.append(Problem(str(root), f"unknown category '{category}' (found: {', '.join(found) if found else 'none'})"))
    return [category] if category in found else []


def _category(report: Report, layout: Layout, root: Path, name: str, test_set: str) -> list[Sample]:
    """Adds one category's counts and listing problems to ``report``; returns its samples to open."""
    cat_dir = root / name
    report.problems += [Problem(p.path, p.message, p.level) for p in layout.listing_problems(root, name)]  # type: ignore[arg-type]
    splits = {"train": layout.samples(root, name, "train")}
    if layout.published_validation:
        splits["validation"] = layout.samples(root, name, "validation")
    splits["test"] = layout.samples(root, name, "test", test_set)
    report.counts[name] = _counts(splits)
    report.problems += _structure(layout, cat_dir, splits)
    for folder in layout.data_folders(cat_dir):
        report.problems += _stray_files(folder)
    if layout.name == "mvtec_ad":
        report.problems += _orphan_masks(cat_dir, splits["test"])
    return [s for samples in splits.values() for s in samples]


def validate_dataset(root: str | Path, category: Optional[str] = None, deep: bool = True, dataset: str = "",
                     layout: str = "", test_set: str = "") -> Report:
    """Check ``category`` (default: every category under ``root``) in the root's layout (``layout``, else
    ``dataset``'s, else recognised); never raises on bad data."""
    root = Path(root)
    report = Report(root=str(root))
    if not root.exists():
        report.problems.append(Problem(str(root), "dataset root does not exist"))
        return report
    if not root.is_dir():
        report.problems.append(Problem(str(root), "dataset root is not a folder"))
        return report
    try:
        reader, report.how = resolve_layout(root, dataset, layout)
        report.layout = reader.name
        categories = _categories(report, reader, root, category)
        report.categories = categories
        jobs = [(s, root / name) for name in categories for s in _category(report, reader, root, name, test_set)]
    except DataError as exc:  # a layout that cannot be read at all (an unreadable CSV, an unknown name)
        report.problems.append(Problem(str(root), str(exc)))
        return report

    # PIL releases the GIL while decoding, so threads make a deep pass several times faster
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for problems in pool.map(lambda job: check_sample(job[0], job[1], deep, reader), jobs):
            report.problems += problems
    return report


def validate_or_raise(root: str | Path, category: Optional[str] = None, deep: bool = True, dataset: str = "",
                      layout: str = "", test_set: str = "") -> Report:
    """:func:`validate_dataset`, raising DataError with the first error and how many others."""
    report = validate_dataset(root, category, deep, dataset, layout, test_set)
    errors = report.errors
    if errors:
        named = f" --dataset {dataset}" if dataset else ""
        command = f"masf-bench data check {root}{named}" + (f" --category {category}" if category else "")
        more = f"and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}; " if len(errors) > 1 else ""
        raise DataError(f"{errors[0]} ({more}run `{command}`)")
    return report
