"""The synthetic dataset in every published layout that masf-bench reads (masf/data/layouts.py).

:func:`write_layout` takes a dataset in the MVTec AD layout (``masf-bench data synth`` writes one)
and writes the same images into the folders of MVTec AD, MPDD, MVTec 3D-AD, VisA, MVTec AD 2,
MVTec LOCO AD or BTAD, so that each reader can be checked to give the same images, and a trial
the same metrics, as the MVTec layout does. Image files are copied byte for byte; masks are
copied, or rewritten where a layout stores them otherwise (VisA: value 1; LOCO: one file per
connected region, values 255 and 250; MVTec 3D-AD: all-zero masks for good test images too).

Naming rules (``NAME`` is the source file name, ``STEM`` its stem, ``k`` a running index over
the defective test images of the folder, in the source's (defect type, file name) order):

    mvtec_ad, mpdd  the source tree as it is
    mvtec_3d        CAT/{train,validation}/good/{rgb/NAME, xyz/STEM.tiff};
                    CAT/test/TYPE/{rgb/NAME, gt/NAME, xyz/STEM.tiff}
    visa            CAT/Data/Images/Normal/IIII.png (train normals first, then test normals),
                    CAT/Data/Images/Anomaly/kkk.png, CAT/Data/Masks/Anomaly/kkk.png,
                    split_csv/1cls.csv at the root and CAT/image_anno.csv (source defect types)
    mvtec_ad2       CAT/{train,validation}/good/NAME, CAT/test_public/good/NAME,
                    CAT/test_public/bad/kkk_DEFECT_STEM.png + ground_truth/bad/kkk_DEFECT_STEM_mask.png,
                    CAT/test_private{,_mixed}/iii.png (a few unlabelled copies of test images)
    mvtec_loco      CAT/{train,validation}/good/NAME, CAT/test/good/NAME,
                    CAT/test/{logical,structural}_anomalies/kkk.png + ground_truth/TYPE/kkk/00m.png;
                    the source's sorted defect types alternate between the two LOCO types;
                    CAT/defect_types.json maps TYPE/kkk.png to the source type
    btad            CAT/train/ok/NAME, CAT/test/ok/NAME, CAT/test/ko/kkk_DEFECT_STEM.png,
                    CAT/ground_truth/ko/kkk_DEFECT_STEM.png

Where the layout publishes a validation split (mvtec_3d, mvtec_ad2, mvtec_loco), the training
normals that :func:`masf.data.mvtec.split_normals` (``val_fraction``, ``seed``) holds out go to
``validation/good`` and the rest stay in train, names unchanged; elsewhere train holds them all.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from masf.data.mvtec import GOOD, image_files, list_categories, split_normals
from masf.errors import DataError

WRITTEN_LAYOUTS = ("mvtec_ad", "mpdd", "mvtec_3d", "visa", "mvtec_ad2", "mvtec_loco", "btad")
PUBLISHED_VALIDATION = ("mvtec_3d", "mvtec_ad2", "mvtec_loco")
LOCO_TYPES = ("logical_anomalies", "structural_anomalies")
LOCO_VALUES = (255, 250)  # the first and the second file of a split LOCO mask
VISA_MASK_VALUE = 1
N_PRIVATE = 2  # good and as many defective test images copied into each MVTec AD 2 private test set
VISA_CSV = "split_csv/1cls.csv"
VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VALIDATION_DIR = {"mvtec_3d": "validation/good/rgb", "mvtec_ad2": "validation/good", "mvtec_loco": "validation/good"}
IMAGE_ROLES = ("train", "validation", "test", "unlabelled")

# what a category folder of each layout may hold before write_layout replaces it
_CATEGORY_CONTENT = {
    "mvtec_ad": {"train", "test", "ground_truth"},
    "mpdd": {"train", "test", "ground_truth"},
    "mvtec_3d": {"train", "validation", "test"},
    "visa": {"Data", "image_anno.csv"},
    "mvtec_ad2": {"train", "validation", "test_public", "test_private", "test_private_mixed"},
    "mvtec_loco": {"train", "validation", "test", "ground_truth", "defect_types.json", "defects_config.json"},
    "btad": {"train", "test", "ground_truth"},
}


@dataclass(frozen=True)
class Planned:
    """One file to write: ``dst`` (relative to the layout's root, POSIX) made from ``src``."""

    dst: str
    src: Path  # the source image (images, xyz, empty masks: the image whose size they take) or mask
    role: str  # train | validation | test | unlabelled (images); mask | empty_mask | xyz
    defect: str = GOOD  # the source's defect type ("good" for normal images)
    value: int = 0  # masks: 0 copies the file; else the mask is rewritten with this value where it is > 0
    part: Optional[int] = None  # LOCO: None the whole mask; 0 its first connected region; 1 all the others


@dataclass(frozen=True)
class _Test:
    """One source test image; ``mask`` is None for good images."""

    defect: str
    image: Path
    mask: Optional[Path]

    @property
    def mask_file(self) -> Path:
        assert self.mask is not None, self.image
        return self.mask


def check_layout(layout: str) -> None:
    """DataError, one line, unless ``layout`` is one :func:`write_layout` writes."""
    if layout not in WRITTEN_LAYOUTS:
        raise DataError(f"unknown layout '{layout}' (known: {', '.join(WRITTEN_LAYOUTS)})")


# ------------------------------------------------------------------ the source (MVTec AD layout)


def _source(cat: Path) -> tuple[list[Path], list[_Test]]:
    """A source category's training normals (sorted by name) and test images (by defect type, name)."""
    train = image_files(cat / "train" / GOOD)
    if not train:
        raise DataError(f"{cat / 'train' / GOOD}: no training images to write")
    tests: list[_Test] = []
    folders = sorted(p for p in (cat / "test").iterdir() if p.is_dir() and not p.name.startswith(".")) if (cat / "test").is_dir() else []
    for folder in folders:
        for image in image_files(folder):
            if folder.name == GOOD:
                tests.append(_Test(GOOD, image, None))
                continue
            mask = cat / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise DataError(f"{mask}: missing mask of {image}")
            tests.append(_Test(folder.name, image, mask))
    return train, tests


def _held_out(train: list[Path], cat: Path, val_fraction: float, seed: int) -> set[int]:
    return set(split_normals(len(train), val_fraction, seed, where=str(cat / "train" / GOOD))[1])


def _width(n: int, least: int = 3) -> int:
    return max(least, len(str(max(n - 1, 0))))


def _good_bad(tests: list[_Test]) -> tuple[list[_Test], list[_Test]]:
    return [t for t in tests if t.mask is None], [t for t in tests if t.mask is not None]


def _normals(c: str, train: list[Path], held: set[int]) -> list[Planned]:
    """CAT/train/good/NAME, or CAT/validation/good/NAME for the held-out ones."""
    splits = ["validation" if i in held else "train" for i in range(len(train))]
    return [Planned(f"{c}/{s}/good/{p.name}", p, s) for p, s in zip(train, splits)]


# ------------------------------------------------------------------ plans, one per layout


def _plan_mvtec(c: str, train: list[Path], tests: list[_Test]) -> list[Planned]:
    out = [Planned(f"{c}/train/good/{p.name}", p, "train") for p in train]
    for t in tests:
        out.append(Planned(f"{c}/test/{t.defect}/{t.image.name}", t.image, "test", t.defect))
        if t.mask is not None:
            out.append(Planned(f"{c}/ground_truth/{t.defect}/{t.mask.name}", t.mask, "mask", t.defect))
    return out


def _plan_3d(c: str, train: list[Path], tests: list[_Test], held: set[int]) -> list[Planned]:
    out: list[Planned] = []
    for i, p in enumerate(train):
        split = "validation" if i in held else "train"
        out += [Planned(f"{c}/{split}/good/rgb/{p.name}", p, split), Planned(f"{c}/{split}/good/xyz/{p.stem}.tiff", p, "xyz")]
    for t in tests:
        base = f"{c}/test/{t.defect}"
        out.append(Planned(f"{base}/rgb/{t.image.name}", t.image, "test", t.defect))
        gt = f"{base}/gt/{t.image.stem}.png"  # named like its image, as in MVTec 3D-AD
        out.append(Planned(gt, t.mask, "mask", t.defect) if t.mask is not None else Planned(gt, t.image, "empty_mask"))
        out.append(Planned(f"{base}/xyz/{t.image.stem}.tiff", t.image, "xyz", t.defect))
    return out


def _plan_visa(c: str, train: list[Path], tests: list[_Test]) -> list[Planned]:
    good, bad = _good_bad(tests)
    w, wb = _width(len(train) + len(good), 4), _width(len(bad))
    normal, anomaly, masks = f"{c}/Data/Images/Normal", f"{c}/Data/Images/Anomaly", f"{c}/Data/Masks/Anomaly"
    out = [Planned(f"{normal}/{i:0{w}d}.png", p, "train") for i, p in enumerate(train)]
    out += [Planned(f"{normal}/{len(train) + j:0{w}d}.png", t.image, "test") for j, t in enumerate(good)]
    for k, t in enumerate(bad):
        out.append(Planned(f"{anomaly}/{k:0{wb}d}.png", t.image, "test", t.defect))
        out.append(Planned(f"{masks}/{k:0{wb}d}.png", t.mask_file, "mask", t.defect, value=VISA_MASK_VALUE))
    return out


def _plan_ad2(c: str, train: list[Path], tests: list[_Test], held: set[int]) -> list[Planned]:
    out = _normals(c, train, held)
    good, bad = _good_bad(tests)
    out += [Planned(f"{c}/test_public/good/{t.image.name}", t.image, "test") for t in good]
    w = _width(len(bad))
    for k, t in enumerate(bad):
        stem = f"{k:0{w}d}_{t.defect}_{t.image.stem}"
        out.append(Planned(f"{c}/test_public/bad/{stem}.png", t.image, "test", t.defect))
        out.append(Planned(f"{c}/test_public/ground_truth/bad/{stem}_mask.png", t.mask_file, "mask", t.defect))
    for folder, picks in (("test_private", good[:N_PRIVATE] + bad[:N_PRIVATE]), ("test_private_mixed", good[-N_PRIVATE:] + bad[-N_PRIVATE:])):
        out += [Planned(f"{c}/{folder}/{i:03d}.png", t.image, "unlabelled", t.defect) for i, t in enumerate(picks)]
    return out


def loco_types(defects: list[str]) -> dict[str, str]:
    """Source defect type -> LOCO type: the sorted types alternate, logical first."""
    return {d: LOCO_TYPES[i % 2] for i, d in enumerate(sorted(set(defects) - {GOOD}))}


def _n_regions(mask: Path) -> int:
    from scipy import ndimage  # only LOCO needs it

    return int(ndimage.label(_mask_bool(mask))[1])


def _plan_loco(c: str, train: list[Path], tests: list[_Test], held: set[int]) -> list[Planned]:
    good, bad_all = _good_bad(tests)
    out = _normals(c, train, held) + [Planned(f"{c}/test/good/{t.image.name}", t.image, "test") for t in good]
    types = loco_types([t.defect for t in bad_all])
    for kind in LOCO_TYPES:
        bad = [t for t in bad_all if types[t.defect] == kind]
        w = _width(len(bad))
        for k, t in enumerate(bad):
            name = f"{k:0{w}d}"
            out.append(Planned(f"{c}/test/{kind}/{name}.png", t.image, "test", t.defect))
            parts: tuple[Optional[int], ...] = (0, 1) if _n_regions(t.mask_file) >= 2 else (None,)
            out += [Planned(f"{c}/ground_truth/{kind}/{name}/{m:03d}.png", t.mask_file, "mask", t.defect,
                            value=LOCO_VALUES[m], part=part) for m, part in enumerate(parts)]
    return out


def _plan_btad(c: str, train: list[Path], tests: list[_Test]) -> list[Planned]:
    out = [Planned(f"{c}/train/ok/{p.name}", p, "train") for p in train]
    good, bad = _good_bad(tests)
    out += [Planned(f"{c}/test/ok/{t.image.name}", t.image, "test") for t in good]
    w = _width(len(bad))
    for k, t in enumerate(bad):
        stem = f"{k:0{w}d}_{t.defect}_{t.image.stem}"
        out.append(Planned(f"{c}/test/ko/{stem}.png", t.image, "test", t.defect))
        out.append(Planned(f"{c}/ground_truth/ko/{stem}.png", t.mask_file, "mask", t.defect))
    return out


def plan_layout(src: Path, layout: str, *, val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Planned]]:
    """Category -> the files :func:`write_layout` writes for it, each with its source file."""
    check_layout(layout)
    src = Path(src)
    categories = [c for c in list_categories(src) if (src / c / "train" / GOOD).is_dir()]
    if not categories:
        raise DataError(f"{src}: no category in MVTec AD layout (CATEGORY/train/good) to write")
    plans: dict[str, list[Planned]] = {}
    for c in categories:
        train, tests = _source(src / c)
        if layout in ("mvtec_ad", "mpdd"):
            plans[c] = _plan_mvtec(c, train, tests)
        elif layout == "visa":
            plans[c] = _plan_visa(c, train, tests)
        elif layout == "btad":
            plans[c] = _plan_btad(c, train, tests)
        else:
            held = _held_out(train, src / c, val_fraction, seed)
            plans[c] = {"mvtec_3d": _plan_3d, "mvtec_ad2": _plan_ad2, "mvtec_loco": _plan_loco}[layout](c, train, tests, held)
    return plans


# ------------------------------------------------------------------ writing


def _mask_bool(path: Path) -> np.ndarray:
    """(H, W) bool: where any channel of the mask file is > 0."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L") if im.mode in ("P", "PA") else im)
    return (arr.max(axis=-1) if arr.ndim == 3 else arr) > 0


def _save_mask(mask: np.ndarray, value: int, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * np.uint8(value), mode="L").save(path, format="PNG")


def _write_xyz(image: Path, path: Path) -> None:
    """A small float32 (H, W, 3) TIFF in the place of MVTec 3D-AD's point cloud: x, y and a height from the grey value."""
    import tifffile  # installed with scikit-image

    with Image.open(image) as im:
        w, h = im.size
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tifffile.imwrite(path, np.stack([xs / max(w, 1), ys / max(h, 1), grey], axis=-1), photometric="rgb")


def _write(entry: Planned, dst: Path) -> None:
    path = dst / entry.dst
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.role in IMAGE_ROLES or (entry.role == "mask" and not entry.value):
        shutil.copyfile(entry.src, path)  # a copy, not a link: a test that breaks a written file leaves the source whole
    elif entry.role == "mask":
        mask = _mask_bool(entry.src)
        if entry.part is not None:
            from scipy import ndimage

            labels = ndimage.label(mask)[0]
            mask = labels == 1 if entry.part == 0 else labels >= 2
        _save_mask(mask, entry.value, path)
    elif entry.role == "empty_mask":
        with Image.open(entry.src) as im:
            w, h = im.size
        _save_mask(np.zeros((h, w), bool), 255, path)
    elif entry.role == "xyz":
        _write_xyz(entry.src, path)
    else:
        raise ValueError(f"unknown role {entry.role!r}")


def _clear(folder: Path, layout: str) -> None:
    """Remove a category folder about to be rewritten, but never one that holds anything else."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"{folder} exists and is not a folder; refusing to overwrite it")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in _CATEGORY_CONTENT[layout])
    if extra:
        raise DataError(f"{folder} holds {', '.join(extra[:3])}, which the {layout} layout does not; refusing to delete it")
    shutil.rmtree(folder)


def _visa_tables(dst: Path, plans: dict[str, list[Planned]]) -> None:
    """split_csv/1cls.csv at the root (rows of other objects already there are kept) and CAT/image_anno.csv."""
    rows: list[tuple[str, str, str, str, str]] = []
    csv_path = dst / VISA_CSV
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [tuple(r.get(k) or "" for k in VISA_COLUMNS) for r in csv.DictReader(f) if r.get("object") not in plans]  # type: ignore[misc]
    for c, plan in plans.items():
        anno = []
        for e in plan:
            if e.role not in ("train", "test"):
                continue
            anomalous = e.defect != GOOD
            mask = e.dst.replace("/Data/Images/Anomaly/", "/Data/Masks/Anomaly/") if anomalous else ""
            rows.append((c, e.role, "anomaly" if anomalous else "normal", e.dst, mask))
            anno.append((e.dst, e.defect if anomalous else "normal", mask))
        with (dst / c / "image_anno.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([("image", "label", "mask"), *anno])
    rows.sort(key=lambda r: r[0])  # stable: each object's rows keep their order (train, then test)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([VISA_COLUMNS, *rows])


def _loco_tables(dst: Path, c: str, plan: list[Planned]) -> None:
    """CAT/defect_types.json (written image -> source defect type) and a defects_config.json for the two mask values."""
    types = {e.dst.split("/", 2)[2]: e.defect for e in plan if e.role == "test" and e.defect != GOOD}
    (dst / c / "defect_types.json").write_text(json.dumps(types, indent=1, sort_keys=True) + "\n")
    config = [{"defect_name": f"synthetic_region_{i}", "pixel_value": v, "saturation_threshold": 1.0,
               "relative_saturation": True} for i, v in enumerate(LOCO_VALUES)]
    (dst / c / "defects_config.json").write_text(json.dumps(config, indent=1) + "\n")


_README = """\
Synthetic anomaly-detection data in the published folder layout of {layout}, written by masf-bench
(masf.data.synth_layouts.write_layout) from a synthetic dataset in the MVTec AD layout.
It is NOT {layout}: every image is drawn procedurally (masf.data.synth), and every
image here decodes to exactly the pixels of its source image. Categories: {categories}.
{validation}
"""


def write_layout(src: Path, dst: Path, layout: str, *, val_fraction: float = 0.2, seed: int = 0) -> dict[str, dict[str, int]]:
    """Write the MVTec-layout dataset ``src`` under ``dst`` in ``layout``; return category -> counts.

    Counts are by the source's defect types: ``"train/good"`` (the training normals left in train),
    ``"validation/good"`` (where the layout publishes a validation split), ``"test/good"``,
    ``"test/<defect>"``, and for MVTec AD 2 ``"test_private/unlabelled"`` and
    ``"test_private_mixed/unlabelled"``. Only the written categories' folders (and VisA's rows of
    them in split_csv/1cls.csv) are replaced; anything else in ``dst`` is left alone.
    """
    check_layout(layout)
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"{src}: source dataset folder not found")
    a, b = src.resolve(), dst.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise DataError(f"{dst}: the layout must be written apart from its source {src}")
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst} exists and is not a folder")
    plans = plan_layout(src, layout, val_fraction=val_fraction, seed=seed)
    for c in plans:
        _clear(dst / c, layout)
    dst.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for c, plan in plans.items():
        (dst / c).mkdir()
        per: dict[str, int] = {}
        for entry in plan:
            _write(entry, dst)
            if entry.role in IMAGE_ROLES:
                folder = entry.dst.split("/")[1] if entry.role == "unlabelled" else entry.role
                key = f"{folder}/unlabelled" if entry.role == "unlabelled" else f"{folder}/{entry.defect}"
                per[key] = per.get(key, 0) + 1
        counts[c] = per
        if layout in PUBLISHED_VALIDATION:  # there even when val_fraction=0 holds nothing out
            (dst / c / _VALIDATION_DIR[layout]).mkdir(parents=True, exist_ok=True)
        if layout == "mvtec_loco":
            _loco_tables(dst, c, plan)
    if layout == "visa":
        _visa_tables(dst, plans)
    held = (f"Validation normals: the training images that split_normals(n, {val_fraction:g}, {seed}) holds out "
            "are in validation/good, the rest in train." if layout in PUBLISHED_VALIDATION else "")
    (dst / "README.txt").write_text(_README.format(layout=layout, categories=", ".join(plans), validation=held))
    return counts
