"""Image files and category names: the sample record, image listing, mask lookup, name checks (no image or
tensor libraries). Which folders are categories is the layout's (masf/data/layouts.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from masf.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a split; ``mask_path`` is None for good images (and for missing masks)."""

    image_path: Path
    label: int  # 0 good, 1 defective
    defect_type: str  # "good" for normal images
    mask_path: Optional[Path] = None


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; [] when the folder is missing."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def mask_index(folder: Path) -> dict[str, Path]:
    """Lower-case stem -> mask file for the image files in a ground_truth/DEFECT folder."""
    index: dict[str, Path] = {}
    for p in image_files(folder):
        stem = p.stem.lower()
        # STEM_mask.png wins over other extensions of the same stem
        if stem not in index or p.suffix.lower() == ".png":
            index[stem] = p
    return index


def check_category_name(category: str) -> None:
    """Reject names that are not a single folder name (empty, absolute, '..', separators)."""
    if not isinstance(category, str) or not category.strip():
        raise DataError(f"category name {category!r} is empty")
    if "/" in category or "\\" in category or Path(category).is_absolute():
        raise DataError(f"category name {category!r} must be a folder name, not a path")
    if ".." in category:
        raise DataError(f"category name {category!r} must not contain '..'")
    if category == ".":
        raise DataError(f"category name {category!r} must be a folder name, not '.'")
