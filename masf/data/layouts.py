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

from pathlib import Path
from typing import Optional

from masf.data.folders import GOOD, Sample, image_files, mask_index
from masf.data.layout_base import SPLITS, Layout, Listed, sub_folders, defective_samples  # noqa: F401 (SPLITS, Listed re-exported)
from masf.data.layout_visa import VISA_CSV, VisA
from masf.errors import DataError


class MVTecAD(Layout):
    name, title = "mvtec_ad", "MVTec AD"
    evidence = "CAT/train/good, CAT/test"

    def marks(self, cat_dir: Path) -> bool:
        return (cat_dir / "train").is_dir() or (cat_dir / "test").is_dir()

    def _samples(self, root: Path, cat: Path, split: str) -> list[Sample]:
        if split == "train":
            return [Sample(p, 0, GOOD) for p in image_files(cat / "train" / GOOD)]
        out: list[Sample] = []
        for folder in sub_folders(cat / "test"):
            if folder.name == GOOD:
                out += [Sample(p, 0, GOOD) for p in image_files(folder)]
            else:
                out += defective_samples(image_files(folder), folder.name, mask_index(cat / "ground_truth" / folder.name))
        return out

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        cat = Path(root) / category
        out = super().listing_problems(root, category)
        out += [Listed(str(p), "only train/good is used for training; this folder is ignored", "warning")
                for p in sub_folders(cat / "train") if p.name != GOOD]
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
        for folder in sub_folders(cat / "test"):
            rgb = image_files(folder / "rgb")
            if folder.name == GOOD:
                out += [Sample(p, 0, GOOD) for p in rgb]
            else:
                out += defective_samples(rgb, folder.name, mask_index(folder / "gt"))
        return out

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return sample.image_path.parent.parent / "gt" / sample.image_path.name

    def data_folders(self, cat: Path) -> list[Path]:
        return [self.split_folder(cat, s) for s in ("train", "validation")] + [f / "rgb" for f in sub_folders(cat / "test")]

    def listing_problems(self, root: Path, category: str) -> list[Listed]:
        cat = Path(root) / category
        out = super().listing_problems(root, category)
        for folder in sub_folders(cat / "test"):
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
        bad = defective_samples(image_files(test / "bad"), "bad", mask_index(test / "ground_truth" / "bad"))
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
        for folder in sub_folders(cat / "test"):
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
        ko = defective_samples(image_files(cat / "test" / "ko"), "ko", mask_index(cat / "ground_truth" / "ko"))
        return [Sample(p, 0, GOOD) for p in image_files(cat / "test" / "ok")] + ko

    def expected_mask(self, cat: Path, sample: Sample) -> Path:
        return cat / "ground_truth" / "ko" / f"{sample.image_path.stem}.png"

    def data_folders(self, cat: Path) -> list[Path]:
        return [cat / "train" / "ok", cat / "test" / "ok", cat / "test" / "ko"]


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
    for cat in sub_folders(root):
        name = next((n for n in _RECOGNITION if LAYOUTS[n].marks(cat)), None)
        if name:
            found.setdefault(name, []).append(cat.name)
    if len(found) == 1:
        (name, cats), = found.items()
        return LAYOUTS[name], LAYOUTS[name].evidence.replace("CAT", cats[0]).replace("NN", cats[0])
    if not found:
        itself = next((n for n in _RECOGNITION if LAYOUTS[n].marks(root)), None)
        if itself:  # the root given is one category: the dataset root is the folder above
            return None, (f"{root.name} looks like one category of the {LAYOUTS[itself].title} layout: give the folder "
                          f"that holds the categories, {root.parent}")
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
    if found is None and "looks like one category" in why:
        raise DataError(f"data root {root}: {why}")
    if found is None:
        raise DataError(f"data root {root}: layout not recognised ({why}); name it with --dataset "
                        f"({', '.join(DATASETS)})")
    return found, f"data root {root}: {found.title} layout, recognised ({why}); --dataset names it otherwise"
