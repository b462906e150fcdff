"""The field's datasets in their published folder layouts: which images and masks each split holds.

One :class:`Layout` per published layout; each lists a category's samples for the splits
``train`` (training normals), ``validation`` (published validation normals, where the layout has
them) and ``test`` (labelled test images with their masks), sorted by (defect type, file name)::

    mvtec_ad    CAT/train/good, CAT/test/{good,DEFECT}, CAT/ground_truth/DEFECT/STEM_mask.png
                (MVTec AD, MPDD and every dataset that copies them)
    mvtec_3d    CAT/train/good/rgb, CAT/validation/good/rgb, CAT/test/TYPE/{rgb,gt}
                (MVTec 3D-AD's RGB images; its xyz files are not read)
    visa        split_csv/1cls.csv (object, split, label, image, mask) over
                CAT/Data/Images/{Normal,Anomaly} and CAT/Data/Masks/Anomaly
    mvtec_ad2   CAT/train/good, CAT/validation/good, CAT/test_public/{good,bad},
                CAT/test_public/ground_truth/bad/STEM_mask.png (the private test sets have no labels)
    mvtec_loco  CAT/train/good, CAT/validation/good, CAT/test/{good,logical_anomalies,structural_anomalies},
                CAT/ground_truth/TYPE/STEM/*.png (one mask per defect; the image's mask is their union)
    btad        NN/train/ok, NN/test/{ok,ko}, NN/ground_truth/ko/STEM.{png,bmp}

A root's layout is named (``data.dataset``, ``data.layout``) or recognised from its folders, never
from category names (:func:`resolve_layout`). Reading never decodes an image; what is wrong with the
files is found by ``masf.data.validate``, and each layout adds its own problems there
(:meth:`Layout.listing_problems`: a CSV row that names no file, a test image without its mask, ...).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Optional

from masf.data.folders import GOOD, Sample, check_category_name, image_files, mask_index
from masf.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Listed:
    """A problem found while listing a split, before any file is opened: (path, message, level)."""

    path: str
    message: str
    level: str = "error"


def _dirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name ([] when it is missing)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _sorted(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.defect_type, s.image_path.name))


def _with_masks(images: list[Path], defect: str, masks: dict[str, Path]) -> list[Sample]:
    """Defective samples whose mask is ``STEM_mask`` or ``STEM`` in ``masks`` (None where neither is)."""
    return [Sample(p, 1, defect, masks.get(f"{p.stem.lower()}_mask") or masks.get(p.stem.lower())) for p in images]


class Layout:
    """A published layout. Subclasses set the class attributes and :meth:`_samples`."""

    name: ClassVar[str]
    title: ClassVar[str]
    evidence: ClassVar[str]  # what in a category folder marks the layout, as a path pattern
    published_validation: ClassVar[bool] = False
    binary_masks: ClassVar[bool] = True  # masks hold one defect value (255, 1, ...); False: any value > 0 is defect
    test_folder: ClassVar[str] = "test"  # the labelled test set
    train_folder: ClassVar[str] = "train/good"
    good_folder: ClassVar[str] = GOOD  # the test set's folder of good images ("" where there is none)

    # ---------------------------------------------------------------- categories

    def marks(self, cat_dir: Path) -> bool:
        """Whether ``cat_dir`` holds what this layout's categories hold (:attr:`evidence`)."""
        raise NotImplementedError

    def categories(self, root: Path) -> list[str]:
        """Sorted category names found under ``root`` in this layout."""
        return [p.name for p in _dirs(Path(root)) if self.marks(p)]

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

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        raise NotImplementedError

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
        return [self.split_folder(cat, "train")] + _dirs(cat / self.test_folder)

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


class MVTecAD(Layout):
    name, title = "mvtec_ad", "MVTec AD"
    evidence = "CAT/train/good, CAT/test"

    def marks(self, cat_dir: Path) -> bool:
        return (cat_dir / "train").is_dir() or (cat_dir / "test").is_dir()

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split == "train":
            return [Sample(p, 0, GOOD) for p in image_files(cat / "train" / GOOD)]
        out: list[Sample] = []
        for folder in _dirs(cat / "test"):
            if folder.name == GOOD:
                out += [Sample(p, 0, GOOD) for p in image_files(folder)]
            else:
                out += _with_masks(image_files(folder), folder.name, mask_index(cat / "ground_truth" / folder.name))
        return out

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        cat = Path(root) / category
        out = super().listing_problems(root, category)
        out += [Listed(str(p), "only train/good is used for training; this folder is ignored", "warning")
                for p in _dirs(cat / "train") if p.name != GOOD]
        return out


class MVTec3D(Layout):
    name, title = "mvtec_3d", "MVTec 3D-AD"
    evidence = "CAT/train/good/rgb"
    published_validation = True
    train_folder = "train/good/rgb"

    def marks(self, cat_dir: Path) -> bool:
        return (cat_dir / "train" / GOOD / "rgb").is_dir()

    def split_folder(self, cat: Path, split: str) -> Path:
        return cat / {"train": "train/good/rgb", "validation": "validation/good/rgb", "test": "test"}[split]

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split != "test":
            return [Sample(p, 0, GOOD) for p in image_files(self.split_folder(cat, split))]
        out: list[Sample] = []
        for folder in _dirs(cat / "test"):
            rgb = image_files(folder / "rgb")
            if folder.name == GOOD:
                out += [Sample(p, 0, GOOD) for p in rgb]
            else:
                out += _with_masks(rgb, folder.name, mask_index(folder / "gt"))
        return out

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return sample.image_path.parent.parent / "gt" / sample.image_path.name

    def data_folders(self, cat: Path) -> list[Path]:
        return [self.split_folder(cat, s) for s in ("train", "validation")] + [f / "rgb" for f in _dirs(cat / "test")]

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        cat = Path(root) / category
        out = super().listing_problems(root, category)
        for folder in _dirs(cat / "test"):
            if not (folder / "rgb").is_dir():
                out.append(Listed(str(folder / "rgb"), "missing folder: MVTec 3D-AD keeps a test type's images in TYPE/rgb"))
        return out


class MVTecAD2(Layout):
    name, title = "mvtec_ad2", "MVTec AD 2"
    evidence = "CAT/test_public"
    published_validation = True
    test_folder = "test_public"
    PRIVATE = ("test_private", "test_private_mixed")

    def marks(self, cat_dir: Path) -> bool:
        return any((cat_dir / t).is_dir() for t in (self.test_folder, *self.PRIVATE))

    def check_test_set(self, test_set: str) -> None:
        if test_set in self.PRIVATE:
            raise DataError(f"data.test_set={test_set}: MVTec AD 2's {test_set} has no published labels "
                            "(its ground truth is kept by MVTec's evaluation server); masf-bench scores test_public")
        super().check_test_set(test_set)

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split != "test":
            return [Sample(p, 0, GOOD) for p in image_files(self.split_folder(cat, split))]
        test = cat / self.test_folder
        bad = _with_masks(image_files(test / "bad"), "bad", mask_index(test / "ground_truth" / "bad"))
        return [Sample(p, 0, GOOD) for p in image_files(test / GOOD)] + bad

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return cat / self.test_folder / "ground_truth" / "bad" / f"{sample.image_path.stem}_mask.png"

    def data_folders(self, cat: Path) -> list[Path]:
        test = cat / self.test_folder
        return [self.split_folder(cat, s) for s in ("train", "validation")] + [test / GOOD, test / "bad"]

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        cat = Path(root) / category
        public = str(cat / self.test_folder)
        out = super().listing_problems(root, category)
        if any((cat / t).is_dir() for t in self.PRIVATE):
            why = ("missing folder: only MVTec AD 2's test_public has labels; test_private and test_private_mixed "
                   "are scored by MVTec's evaluation server")
            out = [Listed(public, why) if p.path == public else p for p in out]
        return out


class MVTecLOCO(Layout):
    name, title = "mvtec_loco", "MVTec LOCO AD"
    evidence = "CAT/test/logical_anomalies or CAT/test/structural_anomalies"
    published_validation = True
    binary_masks = False  # each mask file holds its defect's own value (defects_config.json)
    TYPES = ("logical_anomalies", "structural_anomalies")

    def marks(self, cat_dir: Path) -> bool:
        return any((cat_dir / "test" / t).is_dir() for t in self.TYPES)

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split != "test":
            return [Sample(p, 0, GOOD) for p in image_files(self.split_folder(cat, split))]
        out: list[Sample] = []
        for folder in _dirs(cat / "test"):
            if folder.name == GOOD:
                out += [Sample(p, 0, GOOD) for p in image_files(folder)]
                continue
            for p in image_files(folder):
                masks = cat / "ground_truth" / folder.name / p.stem
                out.append(Sample(p, 1, folder.name, masks if image_files(masks) else None))
        return out

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return cat / "ground_truth" / sample.defect_type / sample.image_path.stem / "000.png"


class BTAD(Layout):
    name, title = "btad", "BTAD"
    evidence = "NN/train/ok"
    train_folder = "train/ok"
    good_folder = "ok"

    def marks(self, cat_dir: Path) -> bool:
        return (cat_dir / "train" / "ok").is_dir()

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split == "train":
            return [Sample(p, 0, GOOD) for p in image_files(cat / "train" / "ok")]
        ko = _with_masks(image_files(cat / "test" / "ko"), "ko", mask_index(cat / "ground_truth" / "ko"))
        return [Sample(p, 0, GOOD) for p in image_files(cat / "test" / "ok")] + ko

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return cat / "ground_truth" / "ko" / f"{sample.image_path.stem}.png"

    def data_folders(self, cat: Path) -> list[Path]:
        return [cat / "train" / "ok", cat / "test" / "ok", cat / "test" / "ko"]


# ---------------------------------------------------------------- VisA: one CSV for every category

VISA_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ("object", "split", "label", "image", "mask")


@dataclass(frozen=True)
class VisaRow:
    line: int
    object: str
    split: str
    label: str
    image: str
    mask: str


def defect_name(text: str) -> str:
    """A defect description as a metric-key-safe type name: lower case, runs of other characters -> '_'."""
    return re.sub(r"[^a-z0-9.-]+", "_", text.strip().lower()).strip("_") or "anomaly"


@lru_cache(maxsize=8)
def _visa_rows(csv_path: Path, mtime_ns: int) -> tuple[tuple[VisaRow, ...], tuple[Listed, ...]]:
    """The CSV's rows and the problems of its shape (cached on the file's modification time)."""
    rows: list[VisaRow] = []
    problems: list[Listed] = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{csv_path}: no column {missing[0]!r} (expected columns: {', '.join(VISA_COLUMNS)})")
            for line, rec in enumerate(reader, start=2):
                row = VisaRow(line, *((rec.get(c) or "").strip() for c in VISA_COLUMNS))
                if row.split not in ("train", "test") or row.label not in ("normal", "anomaly"):
                    problems.append(Listed(f"{csv_path}:{line}", f"split {row.split!r} / label {row.label!r}: expected train|test and normal|anomaly; row ignored"))
                    continue
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the split file ({exc})") from None
    return tuple(rows), tuple(problems)


@lru_cache(maxsize=32)
def _visa_types(anno: Path, mtime_ns: int) -> dict[str, str]:
    """image path (relative to the root) -> defect type, from a category's image_anno.csv."""
    out: dict[str, str] = {}
    try:
        with anno.open(newline="", encoding="utf-8-sig") as f:
            for rec in csv.DictReader(f):
                image, label = (rec.get("image") or "").strip(), (rec.get("label") or "").strip()
                if image and label and label != "normal":
                    out[image] = defect_name(label)
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return out


class VisA(Layout):
    name, title = "visa", "VisA"
    evidence = "split_csv/1cls.csv at the root"
    binary_masks = False  # VisA's masks hold small non-zero values
    train_folder = "Data/Images/Normal"
    good_folder = ""

    def rows(self, root: Path) -> tuple[tuple[VisaRow, ...], tuple[Listed, ...]]:
        path = Path(root) / VISA_CSV
        if not path.is_file():
            raise DataError(f"{path}: not found (a VisA root holds split_csv/1cls.csv)")
        return _visa_rows(path, path.stat().st_mtime_ns)

    def marks(self, cat_dir: Path) -> bool:
        return (cat_dir / "Data" / "Images").is_dir()

    def categories(self, root: Path) -> list[str]:
        root = Path(root)
        if not (root / VISA_CSV).is_file():
            return []
        return sorted({r.object for r in self.rows(root)[0] if r.object and (root / r.object).is_dir()})

    def _defect_types(self, cat: Path) -> dict[str, str]:
        anno = cat / "image_anno.csv"
        return _visa_types(anno, anno.stat().st_mtime_ns) if anno.is_file() else {}

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        split = "train" if split == "train" else "test"
        types = self._defect_types(cat)
        out = []
        for r in self.rows(root)[0]:
            image = root / r.image
            if r.object != cat.name or r.split != split or not image.is_file():
                continue  # a row naming no file is reported by listing_problems
            if r.label == "normal":
                out.append(Sample(image, 0, GOOD))
            else:
                out.append(Sample(image, 1, types.get(r.image, "anomaly"), root / r.mask if r.mask else None))
        return out

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return cat / "Data" / "Masks" / "Anomaly" / f"{sample.image_path.stem}.png"

    def data_folders(self, cat: Path) -> list[Path]:
        return [cat / "Data" / "Images" / "Normal", cat / "Data" / "Images" / "Anomaly"]

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        root = Path(root)
        csv_path = root / VISA_CSV
        rows, shape = self.rows(root)
        out = [p for p in shape]
        mine = [r for r in rows if r.object == category]
        for r in mine:
            if not (root / r.image).is_file():
                out.append(Listed(f"{csv_path}:{r.line}", f"names image {r.image}, which does not exist"))
            elif r.label == "anomaly" and not r.mask:
                out.append(Listed(f"{csv_path}:{r.line}", f"anomalous image {r.image} has no mask in the row"))
        for split in ("train", "test"):
            if not any(r.split == split for r in mine):
                out.append(Listed(f"{csv_path}", f"no {split} rows for object {category!r}"))
        return out


# ---------------------------------------------------------------- registry, datasets, recognition

LAYOUTS: dict[str, Layout] = {cls.name: cls() for cls in (MVTecAD, MVTec3D, VisA, MVTecAD2, MVTecLOCO, BTAD)}
# dataset name -> its layout
DATASETS = {"mvtec_ad": "mvtec_ad", "mpdd": "mvtec_ad", "mvtec_3d": "mvtec_3d", "visa": "visa",
            "mvtec_ad2": "mvtec_ad2", "mvtec_loco": "mvtec_loco", "btad": "btad"}
ALIASES = {"mvtec": "mvtec_ad", "mvtec-ad": "mvtec_ad", "mvtecad": "mvtec_ad", "mvtec_ad_2": "mvtec_ad2",
           "mvtec-ad-2": "mvtec_ad2", "mvtec3d": "mvtec_3d", "mvtec_3d_ad": "mvtec_3d", "mvtec-3d-ad": "mvtec_3d",
           "mvtec_loco_ad": "mvtec_loco", "loco": "mvtec_loco"}
# recognised from a category folder in this order: the more specific layouts first
_RECOGNITION = ("mvtec_3d", "mvtec_ad2", "mvtec_loco", "btad", "mvtec_ad")


def canonical_dataset(name: str) -> str:
    """A dataset name or alias -> its canonical name ("" stays ""); DataError listing the known ones."""
    key = (name or "").strip().lower()
    if not key:
        return ""
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return key


def dataset_layout(name: str) -> Layout:
    """The layout a dataset is published in."""
    return LAYOUTS[DATASETS[canonical_dataset(name) or "mvtec_ad"]]


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise DataError(f"unknown layout '{name}' (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def recognise(root: Path) -> tuple[Optional[Layout], str]:
    """The layout recognised from ``root``'s folders and the evidence, or (None, why not)."""
    root = Path(root)
    if (root / VISA_CSV).is_file():
        return LAYOUTS["visa"], str(VISA_CSV)
    found: dict[str, list[str]] = {}
    for cat in _dirs(root):
        name = next((n for n in _RECOGNITION if LAYOUTS[n].marks(cat)), None)
        if name:
            found.setdefault(name, []).append(cat.name)
    if len(found) == 1:
        (name, cats), = found.items()
        return LAYOUTS[name], LAYOUTS[name].evidence.replace("CAT", cats[0]).replace("NN", cats[0])
    if not found:
        return None, "no category folder of a known layout"
    parts = "; ".join(f"{', '.join(c[:3])}{' ...' if len(c) > 3 else ''}: {LAYOUTS[n].title}" for n, c in sorted(found.items()))
    return None, f"its categories look like different layouts ({parts})"


def resolve_layout(root: Path, dataset: str = "", layout: str = "") -> tuple[Layout, str]:
    """The layout to read ``root`` in: ``layout``, else the ``dataset``'s, else recognised from the folder.

    Returns it and one line saying what is read and how; DataError, one line, when nothing is
    recognised (or the folder mixes layouts) and no name was given.
    """
    root = Path(root)
    if layout:
        found = get_layout(layout)
        return found, f"data root {root}: read in the {found.title} layout (data.layout={layout})"
    if dataset:
        found = dataset_layout(dataset)
        return found, f"data root {root}: {canonical_dataset(dataset)}, read in the {found.title} layout (--dataset)"
    found, why = recognise(root)
    if found is None:
        raise DataError(f"data root {root}: layout not recognised ({why}); name it with --dataset "
                        f"({', '.join(DATASETS)})")
    return found, f"data root {root}: {found.title} layout, recognised ({why}); --dataset names it otherwise"
