"""Samples, decoding, subsets and the torch dataset of one split of one category.

Which files a split holds is the layout's (masf/data/layouts.py: MVTec AD, MPDD, MVTec 3D-AD, VisA,
MVTec AD 2, MVTec LOCO, BTAD); the MVTec AD layout is the default::

    ROOT/CATEGORY/train/good/*.png
    ROOT/CATEGORY/test/good/*.png
    ROOT/CATEGORY/test/DEFECT/*.png
    ROOT/CATEGORY/ground_truth/DEFECT/STEM_mask.png

Images of any mode (RGB, L, P, RGBA, 16-bit, ...) and any size become
3-channel RGB at ``image_size`` x ``image_size``; masks are read as ``> 0``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from masf.data.folders import (  # noqa: F401 (re-exported)
    GOOD, IMAGE_EXTENSIONS, Sample, check_category_name, image_files, is_image_file, mask_index,
)
from masf.data.layouts import LAYOUTS, get_layout
from masf.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------ listing


def list_categories(root: str | Path) -> list[str]:
    """Category folders of an MVTec AD layout root (they have train/ or test/), sorted."""
    return LAYOUTS["mvtec_ad"].categories(Path(root))


def category_dir(root: str | Path, category: str) -> Path:
    """``root / category`` of an MVTec AD layout root, after checking the name and that the category exists."""
    return LAYOUTS["mvtec_ad"].category_dir(Path(root), category)


def list_samples(root: str | Path, category: str, split: str, layout: str = "mvtec_ad", test_set: str = "") -> list[Sample]:
    """Every image of ``split`` in ``layout`` (masf.data.layouts), sorted by (defect type, file name);
    defective images get their mask path (a folder of masks for MVTec LOCO)."""
    return get_layout(layout).samples(Path(root), category, split, test_set)


def mask_files(mask_path: Path) -> list[Path]:
    """The files of one image's mask: the file itself, or every image file of a mask folder (MVTec LOCO)."""
    return image_files(mask_path) if mask_path.is_dir() else [mask_path]


# ------------------------------------------------------------------ decoding


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path``; DataError naming the file when that fails."""
    try:
        with Image.open(path) as im:
            im.load()  # decodes every pixel: catches truncated files
            return im
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot decode image ({reason})") from None


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Integer or float pixels -> uint8; 16-bit ranges are scaled by 255/65535."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    hi = float(a.max()) if a.size else 0.0
    if np.issubdtype(arr.dtype, np.floating) and hi <= 1.0:
        a = a * 255.0  # float images in [0, 1]
    elif (arr.dtype.kind == "u" and arr.dtype.itemsize == 2) or hi > 255:
        a = a / 257.0  # 16-bit range (0..65535) -> 0..255
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha dropped, palettes expanded, 16-bit scaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(to_uint8(np.asarray(im))).convert("RGB")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    return im.convert("RGB")  # RGBA/LA drop alpha; L, 1, CMYK, YCbCr, ... convert


def mask_array(im: Image.Image) -> np.ndarray:
    """A mask image -> (H, W) bool, ``True`` where any colour channel is > 0."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("LA", "La"):
        im = im.getchannel(0)
    elif im.mode in ("RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return arr > 0


def resize_image(im: Image.Image, size: int) -> np.ndarray:
    """Any-mode image -> (size, size, 3) uint8 RGB, bilinear with antialiasing (PIL's filters)."""
    im = to_rgb(im)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def load_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB of the image file at ``path``."""
    return resize_image(open_image(path), size)


def load_mask(path: Path, size: int, image_size_wh: Optional[tuple[int, int]] = None) -> np.ndarray:
    """(size, size) uint8 in {0, 1}, nearest resize; a folder of masks gives their union (any value > 0).
    DataError, naming the file, when a mask's size differs from its image's."""
    union: Optional[np.ndarray] = None
    for file in mask_files(path):
        im = open_image(file)
        if image_size_wh is not None and im.size != image_size_wh:
            w, h = im.size
            iw, ih = image_size_wh
            raise DataError(f"{file}: mask is {w}x{h} but its image is {iw}x{ih}")
        union = mask_array(im) if union is None else union | mask_array(im)
    if union is None:
        raise DataError(f"{path}: mask folder holds no mask image")
    binary = Image.fromarray(union.astype(np.uint8))
    if binary.size != (size, size):
        binary = binary.resize((size, size), Image.NEAREST)
    return np.array(binary, dtype=np.uint8)


# ------------------------------------------------------------------ subsets


def _allocate(sizes: Sequence[int], k: int) -> list[int]:
    """Split ``k`` over groups proportionally to ``sizes`` (largest remainder, ties by order)."""
    total = sum(sizes)
    exact = [k * s / total for s in sizes]
    alloc = [min(s, math.floor(e)) for s, e in zip(sizes, exact)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    while sum(alloc) < k:
        for i in order:
            if sum(alloc) < k and alloc[i] < sizes[i]:
                alloc[i] += 1
    return alloc


def subset_indices(samples: Sequence[Sample], max_images: int, seed: int) -> list[int]:
    """A seeded subset of at most ``max_images`` samples, spread over defect types.

    Each defect type (``good`` included) gets its proportional share; at least one
    good and one defective image are kept when both exist and ``max_images >= 2``.
    """
    if max_images < 1:
        raise DataError(f"max_images must be >= 1 (got {max_images})")
    if max_images >= len(samples):
        return list(range(len(samples)))
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.defect_type, []).append(i)
    names = sorted(groups)
    sizes = [len(groups[n]) for n in names]
    alloc = _allocate(sizes, max_images)
    good = [i for i, n in enumerate(names) if n == GOOD]
    bad = [i for i, n in enumerate(names) if n != GOOD]
    if good and bad and max_images >= 2:
        g = good[0]
        if alloc[g] == 0:
            donor = max(bad, key=lambda i: (alloc[i], -i))
            alloc[donor] -= 1
            alloc[g] += 1
        if sum(alloc[i] for i in bad) == 0:
            alloc[g] -= 1
            alloc[max(bad, key=lambda i: (sizes[i], -i))] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for name, n in zip(names, alloc):
        members = groups[name]
        chosen += [members[j] for j in rng.choice(len(members), size=n, replace=False)]
    return sorted(chosen)


def split_normals(n: int, val_fraction: float, seed: int, where: str = "train/good") -> tuple[list[int], list[int]]:
    """A seeded split of ``n`` training normals into (training, validation) indices, each sorted.

    ``round(val_fraction * n)`` images (at least one when ``val_fraction > 0``) are held out; the
    split depends on ``seed`` and ``n`` only. DataError when fewer than 2 training images remain.
    """
    if val_fraction <= 0:
        return list(range(n)), []
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 2:
        raise DataError(f"{where}: {n} image(s) are too few for data.val_fraction={val_fraction:g} "
                        f"({n_val} held out for validation, {n - n_val} left for training; need >= 2): "
                        "add images or lower data.val_fraction (0 turns the validation split off)")
    order = np.random.default_rng([seed, n]).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def split_calibration(val_idx: list[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Validation normals -> (selection, calibration) indices, each sorted: ``round(share * n)`` of them
    (seeded) calibrate, at least one is left to select on."""
    n_cal = min(int(round(share * len(val_idx))), len(val_idx) - 1) if val_idx else 0
    if n_cal <= 0:
        return list(val_idx), []
    order = np.random.default_rng([seed, len(val_idx), 0xCA1]).permutation(len(val_idx))
    calib = sorted(int(val_idx[i]) for i in order[:n_cal])
    return sorted(set(val_idx) - set(calib)), calib


# ------------------------------------------------------------------ dataset


class MVTecDataset(Dataset):
    """One split of one category; items are dicts of image, mask, label, defect_type, path.

    With ``cache`` the decoded, resized pixels stay in memory as uint8 after their
    first read. DataLoader workers each hold their own cache, so use
    ``persistent_workers=True`` (or ``num_workers=0``) for later epochs to profit.
    """

    def __init__(
        self,
        root: str | Path,
        category: str,
        split: Literal["train", "validation", "test"],
        image_size: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        max_images: Optional[int] = None,
        seed: int = 0,
        cache: bool = True,
        indices: Optional[Sequence[int]] = None,
        layout: str = "mvtec_ad",
        test_set: str = "",
    ):
        if image_size < 1:
            raise DataError(f"image_size must be >= 1 (got {image_size})")
        self.root = Path(root)
        self.category = category
        self.split = split
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.cache = cache
        reader = get_layout(layout)
        samples = list_samples(self.root, category, split, layout, test_set)
        cat = self.root / category
        where = reader.split_folder(cat, split)
        if not samples:
            raise DataError(f"{where}: no images (accepted: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        missing = [s for s in samples if s.label == 1 and s.mask_path is None]
        if missing:
            s = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{s.image_path}: no ground-truth mask, expected {reader.expected_mask(cat, s)}{more}")
        if indices is not None:  # a part of the split (see split_normals), before any max_images cap
            samples = [samples[i] for i in indices]
        if max_images is not None:
            samples = [samples[i] for i in subset_indices(samples, max_images, seed)]
        self.samples: list[Sample] = samples
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        self._cache: dict[int, tuple[np.ndarray, Optional[np.ndarray]]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def defect_types(self) -> list[str]:
        """Sorted defect types present (``good`` included)."""
        return sorted({s.defect_type for s in self.samples})

    def labels(self) -> np.ndarray:
        """(N,) int64, 1 for defective images."""
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def _read(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if index in self._cache:
            return self._cache[index]
        s = self.samples[index]
        im = open_image(s.image_path)
        image = resize_image(im, self.image_size)
        mask = None if s.mask_path is None else load_mask(s.mask_path, self.image_size, im.size)
        if self.cache:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image, mask = self._read(index)
        s = self.samples[index]
        return self.item(image, mask, s.label, s.defect_type, str(s.image_path))

    def item(self, image: np.ndarray, mask: Optional[np.ndarray], label: int, defect_type: str, path: str) -> dict[str, Any]:
        """(S, S, 3) uint8 pixels and an optional (S, S) {0, 1} mask -> one normalised item."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        x = (x - self._mean_t) / self._std_t  # (3, S, S)
        if mask is None:
            m = torch.zeros(1, self.image_size, self.image_size, dtype=torch.float32)
        else:
            m = torch.from_numpy(np.ascontiguousarray(mask)).float().unsqueeze(0)  # (1, S, S) in {0, 1}
        return {"image": x, "mask": m, "label": label, "defect_type": defect_type, "path": path}


def denormalize(
    image: torch.Tensor | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """A normalised (3, H, W) image -> (H, W, 3) uint8, for figures."""
    x = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
    x = x * np.asarray(std, dtype=np.float32).reshape(3, 1, 1) + np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
