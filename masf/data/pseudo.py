"""Pseudo-anomalies on held-out normal images: the validation split's defects, with exact masks.

Validation needs anomalies, and a category's real defects belong to its test
split. So every validation normal also appears with one synthetic defect:
CutPaste (a patch of the same image moved elsewhere, Li et al., CVPR 2021), a
CutPaste scar (a thin rotated strip), or a surface defect from the synthetic
dataset's painter (scratch, crack, stain, particles, liquid film). These work on
any real image: they need no object mask and keep grayscale images gray.

The mask is exact by construction: the pixels that the defect changed by more
than ``MASK_THRESHOLD`` (the synthetic dataset's rule), at the resolution the
model sees. Every draw is seeded by (seed, image index), so the validation set
is the same in every process, for every training seed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from masf.data import synth_defects as sd
from masf.data.mvtec import MVTecDataset
from masf.data.synth import MASK_THRESHOLD
from masf.data.synth_draw import F32, Scene, canvas

PSEUDO_KINDS = ("cutpaste", "scar", "scratch", "stain", "crack", "particles", "liquid")
MIN_AREA = 4e-4  # a defect covers at least this share of the image (about 26 pixels at 256 px)


def _box(rng: np.random.Generator, size: int, area: float, aspect: float) -> tuple[int, int]:
    h = int(np.clip(round(np.sqrt(area * size * size / aspect)), 2, size - 1))
    w = int(np.clip(round(np.sqrt(area * size * size * aspect)), 2, size - 1))
    return h, w


def _jitter(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness and contrast jitter, the same for every channel (gray stays gray)."""
    f = patch.astype(F32)
    mean = f.mean()
    f = (f - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.85, 1.15)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def cutpaste(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rectangle of 2-15 % of the image, jittered, pasted at another place."""
    size = img.shape[0]
    h, w = _box(rng, size, rng.uniform(0.02, 0.15), float(np.exp(rng.uniform(np.log(0.3), np.log(3.3)))))
    sy, sx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    ty, tx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    out = img.copy()
    out[ty : ty + h, tx : tx + w] = _jitter(img[sy : sy + h, sx : sx + w], rng)
    return out


def scar(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thin strip of the image (2-6 % wide, 10-25 % long), jittered, rotated and pasted elsewhere."""
    size = img.shape[0]
    w = max(2, int(round(rng.uniform(0.02, 0.06) * size)))
    h = max(4, int(round(rng.uniform(0.10, 0.25) * size)))
    sy, sx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    strip = Image.fromarray(_jitter(img[sy : sy + h, sx : sx + w], rng))
    alpha = Image.new("L", strip.size, 255)
    angle = float(rng.uniform(-45, 45))
    strip, alpha = strip.rotate(angle, Image.BILINEAR, expand=True), alpha.rotate(angle, Image.BILINEAR, expand=True)
    ty, tx = int(rng.integers(0, max(1, size - strip.height + 1))), int(rng.integers(0, max(1, size - strip.width + 1)))
    out = Image.fromarray(img)
    out.paste(strip, (tx, ty), alpha)
    return np.asarray(out, dtype=np.uint8).copy()


def _painted(defect: Callable[..., np.ndarray]) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """A synthetic-dataset surface defect, painted on a real image (the whole image is the surface)."""

    def draw(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = canvas(img.shape[0])
        f = img.astype(F32) / 255.0
        scene = Scene(img=f, region=np.ones(img.shape[:2], F32), background=f)
        return np.clip(np.rint(defect(c, scene, rng, 1.0) * 255.0), 0, 255).astype(np.uint8)

    return draw


DRAW: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "cutpaste": cutpaste,
    "scar": scar,
    "scratch": _painted(sd.scratch),
    "stain": _painted(sd.stain),
    "crack": _painted(sd.crack),
    "particles": _painted(sd.particles),
    "liquid": _painted(sd.liquid),
}


def changed(out: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(H, W) uint8 {0, 1}: where ``out`` differs from ``base`` by more than the mask threshold."""
    return (np.abs(out.astype(np.int16) - base.astype(np.int16)).max(axis=-1) > MASK_THRESHOLD * 255).astype(np.uint8)


def pseudo_anomaly(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 normal image -> (defective image, exact (S, S) {0, 1} mask).

    A draw that changes too few pixels (a patch pasted onto look-alike texture) is drawn again,
    up to 8 times; the mask is always what actually changed.
    """
    if kind not in DRAW:
        raise ValueError(f"unknown pseudo-anomaly kind '{kind}' (known: {', '.join(DRAW)})")
    gray = bool(np.all(img[..., :1] == img))
    need = max(1, int(round(MIN_AREA * img.shape[0] * img.shape[1])))
    for _ in range(8):
        out = DRAW[kind](img, rng)
        if gray:  # a defect on a gray image is gray too
            out = np.repeat(np.rint(out.astype(F32).mean(axis=-1, keepdims=True)).astype(np.uint8), 3, axis=-1)
        mask = changed(out, img)
        if mask.sum() >= need:
            break
    return out, mask


class ValidationSet(Dataset):
    """Held-out normals (label 0), then the same images with one pseudo-anomaly each (label 1).

    Items are those of :class:`MVTecDataset` (image, mask, label, defect_type, path); a
    pseudo-anomaly's defect_type is ``pseudo_<kind>`` and its path the normal's path.
    """

    def __init__(self, normals: MVTecDataset, seed: int = 0, kinds: Sequence[str] = PSEUDO_KINDS,
                 calibration: Optional[MVTecDataset] = None):
        self.normals = normals
        self.calibration = calibration  # held-out normals that calibrate, never selected on
        self.seed = seed
        self.kinds = tuple(kinds)
        self._pseudo: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}

    def __len__(self) -> int:
        return 2 * len(self.normals)

    def labels(self) -> np.ndarray:
        n = len(self.normals)
        return np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]

    def pseudo(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(image, mask, kind) of the i-th normal's pseudo-anomaly (drawn once, then kept)."""
        if i not in self._pseudo:
            image, _ = self.normals._read(i)
            kind = self.kinds[i % len(self.kinds)]
            rng = np.random.default_rng([self.seed, i, 0x5EED])
            self._pseudo[i] = (*pseudo_anomaly(image, kind, rng), kind)
        return self._pseudo[i]

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.normals)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        if index < n:
            return self.normals[index]
        i = index - n
        image, mask, kind = self.pseudo(i)
        return self.normals.item(image, mask, 1, f"pseudo_{kind}", str(self.normals.samples[i].image_path))
