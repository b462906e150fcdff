"""VisA's layout: one CSV (split_csv/1cls.csv) lists every category's train and test images and masks."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from masf.data.folders import GOOD, Sample
from masf.data.layout_base import Layout, Listed
from masf.errors import DataError

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
