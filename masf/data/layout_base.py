"""The base of a published layout (masf/data/layouts.py): what a layout answers, and shared listing helpers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from masf.data.folders import GOOD, Sample, check_category_name
from masf.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Listed:
    """A problem found while listing a split, before any file is opened: (path, message, level)."""

    path: str
    message: str
    level: str = "error"


def sub_folders(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name ([] when it is missing)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _sorted(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.defect_type, s.image_path.name))


def defective_samples(images: list[Path], defect: str, masks: dict[str, Path]) -> list[Sample]:
    """Defective samples whose mask is ``STEM_mask`` or ``STEM`` in ``masks`` (None where neither is)."""
    return [Sample(p, 1, defect, masks.get(f"{p.stem.lower()}_mask") or masks.get(p.stem.lower())) for p in images]


class Layout(ABC):
    """A published layout. Subclasses set the class attributes, :meth:`marks` and :meth:`_samples`."""

    name: ClassVar[str]
    title: ClassVar[str]
    evidence: ClassVar[str]  # what in a category folder marks the layout, as a path pattern
    published_validation: ClassVar[bool] = False
    binary_masks: ClassVar[bool] = True  # masks hold one defect value (255, 1, ...); False: any value > 0 is defect
    test_folder: ClassVar[str] = "test"  # the labelled test set
    train_folder: ClassVar[str] = "train/good"
    good_folder: ClassVar[str] = GOOD  # the test set's folder of good images ("" where there is none)

    # ---------------------------------------------------------------- categories

    @abstractmethod
    def marks(self, cat_dir: Path) -> bool:
        """Whether ``cat_dir`` holds what this layout's categories hold (:attr:`evidence`)."""

    def categories(self, root: Path) -> list[str]:
        """Sorted category names found under ``root`` in this layout."""
        return [p.name for p in sub_folders(Path(root)) if self.marks(p)]

    def category_dir(self, root: Path, category: str) -> Path:
        """``root / category`` after checking it is a category of this layout; DataError, one line, else."""
        check_category_name(category)
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"dataset root {root} {'is not a folder' if root.exists() else 'does not exist'}")
        found = self.categories(root)
        if category in found:
            return root / category
        if (root / category).is_dir():
            raise DataError(f"{root / category}: not a {self.title} category folder (expected {self.evidence})")
        listing = ", ".join(found) if found else "no categories"
        raise DataError(f"unknown category '{category}' in {root} (found: {listing})")

    def check_category(self, root: Path, category: str) -> None:
        self.category_dir(root, category)

    # ---------------------------------------------------------------- samples

    def samples(self, root: Path, category: str, split: str, test_set: str = "") -> list[Sample]:
        """The images of ``split`` (train, validation or test), sorted by (defect type, file name)."""
        if split not in SPLITS:
            raise DataError(f"unknown split '{split}' (expected one of: {', '.join(SPLITS)})")
        if split == "validation" and not self.published_validation:
            raise DataError(f"the {self.title} layout publishes no validation split (data.val_source=train carves one out of train)")
        if split == "test":
            self.check_test_set(test_set)
        cat = self.category_dir(root, category)
        return _sorted(self._samples(Path(root), cat, split))

    @abstractmethod
    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        """The images of ``split`` in the category folder ``cat``, in any order (:meth:`samples` sorts them)."""

    def check_test_set(self, test_set: str) -> None:
        """DataError unless ``test_set`` is "" or this layout's labelled test set."""
        if test_set not in ("", self.test_folder):
            raise DataError(f"data.test_set={test_set!r}: the {self.title} layout's labelled test set is {self.test_folder!r}")

    def split_folder(self, cat: Path, split: str) -> Path:
        """The folder a split's images are in, for messages."""
        return cat / {"train": self.train_folder, "validation": "validation/good", "test": self.test_folder}[split]

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        """Where the mask of a defective sample is expected, for messages."""
        return cat / "ground_truth" / sample.defect_type / f"{sample.image_path.stem}_mask.png"

    def data_folders(self, cat: Path) -> list[Path]:
        """Folders whose files are images of this layout (stray files there are reported)."""
        return [self.split_folder(cat, "train")] + sub_folders(cat / self.test_folder)

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        """Problems of the layout's own structure that listing finds (missing folders, ...)."""
        cat = Path(root) / category
        out = []
        for split in ("train", "test") + (("validation",) if self.published_validation else ()):
            folder = self.split_folder(cat, split)
            if not folder.is_dir():
                needed = "training needs normal images" if split == "train" else (
                    "validation normals are read from it (data.val_source=train carves them out of train instead)"
                    if split == "validation" else "evaluation needs good and defective test images")
                out.append(Listed(str(folder), f"missing folder: {needed}"))
        return out

    def __repr__(self) -> str:
        return f"<layout {self.name}>"
