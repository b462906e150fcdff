"""Pseudo-anomalies on held-out normal images: the validation split's defects, with exact masks.

Validation needs anomalies, and a category's real defects belong to its test
split. So every validation normal also appears with synthetic defects:
CutPaste (a patch of the same image moved elsewhere, Li et al., CVPR 2021), a
CutPaste scar (a thin rotated strip), or a surface defect from the synthetic
dataset's painter (scratch, crack, stain, particles, liquid film). These work on
any real image: they need no object mask and keep grayscale images gray.

Two settings (``data.pseudo``, ``data.pseudo_per_normal``) make the split harder
and larger, so that it can rank scoring options instead of saturating:

- ``difficulty="standard"`` (the default): the draws described above, at their
  full size and strength (a CutPaste patch covers 2-15 % of the image).
- ``difficulty="hard"``: fainter and smaller, as real defects often are. A CutPaste
  patch covers 1-8 % of the image; a scar is 1-3 % of the side wide and 4-10 %
  long (instead of 2-6 % and 10-25 %); a painted defect is painted inside a random
  square window of 60-100 % of the image side (at least 32 px), faded out towards the
  window's border. The drawn defect is then blended into the normal image with an
  opacity drawn in [0.35, 0.75], so fewer of its pixels pass the mask threshold. On
  the real 256 px images of wood and metal_plate the median hard mask covers about
  0.12 % of the image (standard: 0.5 %; their real defects: 1.8 % and 16 %), and the
  pixels in it changed by 39-48 grey levels on average (standard: 69-77).
- ``per_normal=k``: every validation normal appears with k pseudo-anomalies, of
  different kinds while k does not exceed the number of kinds.

The mask is exact by construction: the pixels that the defect changed by more
than ``MASK_THRESHOLD`` (the synthetic dataset's rule), at the resolution the
model sees. A draw that changes fewer than ``MIN_AREA`` of the pixels
(``MIN_AREA_HARD`` for hard draws, which are meant to be small) is drawn again
(see :func:`pseudo_anomaly`).
Every draw is seeded by (seed, image index, draw number), so the validation set
is the same in every process, for every training seed; draw 0 is seeded as it
was before there were several, so the default split is unchanged.
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

Draw = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (S, S, 3) uint8 normal image, rng -> defective image

PSEUDO_KINDS = ("cutpaste", "scar", "scratch", "stain", "crack", "particles", "liquid")
MIN_AREA = 4e-4  # a defect covers at least this share of the image (about 26 pixels at 256 px)
DIFFICULTIES = ("standard", "hard")
# hard draws: small and faint (real defects often cover well under 1 % of the image, at low contrast)
MIN_AREA_HARD = 1e-4  # about 7 pixels at 256 px: a hard defect is meant to be small, but never invisible
HARD_CUTPASTE_AREA = (0.01, 0.08)  # share of the image (standard: 0.02-0.15)
HARD_SCAR_WIDTH, HARD_SCAR_LENGTH = (0.01, 0.03), (0.04, 0.10)  # share of the side (standard: 0.02-0.06, 0.10-0.25)
HARD_WINDOW = (0.6, 1.0)  # side of the window a painted defect is painted in, share of the image side
HARD_WINDOW_PX = 32  # ... and at least this many pixels (so below 107 px a window may be larger than HARD_WINDOW says)
HARD_OPACITY = (0.35, 0.75)  # the drawn defect is blended into the normal image with this opacity


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


def cutpaste(img: np.ndarray, rng: np.random.Generator, area: tuple[float, float] = (0.02, 0.15)) -> np.ndarray:
    """A rectangle of 2-15 % of the image (``area``), jittered, pasted at another place."""
    size = img.shape[0]
    h, w = _box(rng, size, rng.uniform(*area), float(np.exp(rng.uniform(np.log(0.3), np.log(3.3)))))
    sy, sx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    ty, tx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    out = img.copy()
    out[ty : ty + h, tx : tx + w] = _jitter(img[sy : sy + h, sx : sx + w], rng)
    return out


def scar(img: np.ndarray, rng: np.random.Generator, width: tuple[float, float] = (0.02, 0.06),
         length: tuple[float, float] = (0.10, 0.25)) -> np.ndarray:
    """A thin strip of the image (2-6 % wide, 10-25 % long), jittered, rotated and pasted elsewhere."""
    size = img.shape[0]
    w = max(2, int(round(rng.uniform(*width) * size)))
    h = max(4, int(round(rng.uniform(*length) * size)))
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


def _windowed(draw: Draw) -> Draw:
    """A painted defect drawn inside a random square window of ``HARD_WINDOW`` of the image side: the painter
    sees the window as its whole image, so the defect shrinks with it. The window is at least ``HARD_WINDOW_PX``
    pixels wide (the painters' edges are a few pixels wide whatever the size: in a smaller window a soft stain
    would vanish), so on small images the defect shrinks less. The change fades out over the outer fifth of
    the window, so that a defect cut by the window's border shows no straight edge."""

    def small(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = img.shape[0]
        w = int(np.clip(round(rng.uniform(*HARD_WINDOW) * size), min(HARD_WINDOW_PX, size), size))
        y, x = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - w + 1))
        crop = img[y : y + w, x : x + w]
        t = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / (0.2 * w)
        ramp = np.clip(t, 0.0, 1.0).astype(F32)
        fade = (ramp[:, None] * ramp[None, :])[..., None]
        base = crop.astype(F32)
        out = img.copy()
        out[y : y + w, x : x + w] = np.clip(np.rint(base + fade * (draw(crop, rng).astype(F32) - base)), 0, 255).astype(np.uint8)
        return out

    return small


DRAW: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "cutpaste": cutpaste,
    "scar": scar,
    "scratch": _painted(sd.scratch),
    "stain": _painted(sd.stain),
    "crack": _painted(sd.crack),
    "particles": _painted(sd.particles),
    "liquid": _painted(sd.liquid),
}


# hard draws: the same kinds, smaller (the opacity is applied by pseudo_anomaly)
DRAW_HARD: dict[str, Draw] = {
    "cutpaste": lambda img, rng: cutpaste(img, rng, HARD_CUTPASTE_AREA),
    "scar": lambda img, rng: scar(img, rng, HARD_SCAR_WIDTH, HARD_SCAR_LENGTH),
    **{kind: _windowed(DRAW[kind]) for kind in ("scratch", "stain", "crack", "particles", "liquid")},
}


def changed(out: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(H, W) uint8 {0, 1}: where ``out`` differs from ``base`` by more than the mask threshold."""
    return (np.abs(out.astype(np.int16) - base.astype(np.int16)).max(axis=-1) > MASK_THRESHOLD * 255).astype(np.uint8)


def _gray(out: np.ndarray) -> np.ndarray:
    return np.repeat(np.rint(out.astype(F32).mean(axis=-1, keepdims=True)).astype(np.uint8), 3, axis=-1)


def pseudo_anomaly(img: np.ndarray, kind: str, rng: np.random.Generator,
                   difficulty: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 normal image -> (defective image, exact (S, S) {0, 1} mask).

    A draw that changes too few pixels (a patch pasted onto look-alike texture) is drawn again,
    up to 8 times; the mask is always what actually changed. ``difficulty="hard"`` draws the
    smaller defect of ``DRAW_HARD`` and blends it in with an opacity drawn in ``HARD_OPACITY``,
    and its minimum is ``MIN_AREA_HARD``; if none of the 8 hard draws reaches it at its opacity
    (a faint stain), the one that changed the most pixels at full opacity is kept at full opacity,
    and if even that one is too small (a soft stain on a tiny image), the standard draw is kept.
    """
    if kind not in DRAW:
        raise ValueError(f"unknown pseudo-anomaly kind '{kind}' (known: {', '.join(DRAW)})")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown pseudo-anomaly difficulty '{difficulty}' (known: {', '.join(DIFFICULTIES)})")
    gray = bool(np.all(img[..., :1] == img))
    if difficulty == "hard":
        return _hard(img, kind, rng, gray)
    need = max(1, int(round(MIN_AREA * img.shape[0] * img.shape[1])))
    for _ in range(8):
        out = DRAW[kind](img, rng)
        if gray:  # a defect on a gray image is gray too
            out = _gray(out)
        mask = changed(out, img)
        if mask.sum() >= need:
            break
    return out, mask


def _hard(img: np.ndarray, kind: str, rng: np.random.Generator, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    need = max(1, int(round(MIN_AREA_HARD * img.shape[0] * img.shape[1])))
    base = img.astype(F32)
    strongest: Optional[tuple[np.ndarray, np.ndarray]] = None  # (full-opacity draw, its mask)
    for _ in range(8):
        drawn = DRAW_HARD[kind](img, rng)
        if gray:  # a defect on a gray image is gray too (and so is its blend with the gray image)
            drawn = _gray(drawn)
        out = np.clip(np.rint(base + rng.uniform(*HARD_OPACITY) * (drawn.astype(F32) - base)), 0, 255).astype(np.uint8)
        mask = changed(out, img)
        if mask.sum() >= need:
            return out, mask
        full = changed(drawn, img)
        if strongest is None or full.sum() > strongest[1].sum():
            strongest = (drawn, full)
    assert strongest is not None
    if strongest[1].sum() >= need:
        return strongest
    return pseudo_anomaly(img, kind, rng)  # too small to show at all (a soft stain on a tiny image): the standard draw


class ValidationSet(Dataset):
    """Held-out normals (label 0), then the same images with ``per_normal`` pseudo-anomalies each (label 1).

    Items are those of :class:`MVTecDataset` (image, mask, label, defect_type, path); a
    pseudo-anomaly's defect_type is ``pseudo_<kind>`` (whatever the difficulty) and its path the
    normal's path. With n normals the anomalies come draw by draw: items n .. 2n-1 are every
    normal's draw 0 (the split of ``per_normal=1``), then every normal's draw 1, and so on.
    Draw d of normal i is of kind ``kinds[(i + d) % len(kinds)]``, seeded by (seed, i, d).
    """

    def __init__(self, normals: MVTecDataset, seed: int = 0, kinds: Sequence[str] = PSEUDO_KINDS,
                 calibration: Optional[MVTecDataset] = None, difficulty: str = "standard", per_normal: int = 1):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown pseudo-anomaly difficulty '{difficulty}' (known: {', '.join(DIFFICULTIES)})")
        if per_normal < 1:
            raise ValueError(f"per_normal must be >= 1, got {per_normal}")
        self.normals = normals
        self.calibration = calibration  # held-out normals that calibrate, never selected on
        self.seed = seed
        self.kinds = tuple(kinds)
        self.difficulty = difficulty
        self.per_normal = int(per_normal)
        self._pseudo: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, str]] = {}

    def __len__(self) -> int:
        return (1 + self.per_normal) * len(self.normals)

    def labels(self) -> np.ndarray:
        n = len(self.normals)
        return np.r_[np.zeros(n, np.int64), np.ones(n * self.per_normal, np.int64)]

    def pseudo(self, i: int, draw: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
        """(image, mask, kind) of the i-th normal's pseudo-anomaly number ``draw`` (drawn once, then kept)."""
        if not 0 <= draw < self.per_normal:
            raise IndexError(f"draw {draw} out of range for {self.per_normal} pseudo-anomalies per normal")
        if (i, draw) not in self._pseudo:
            image, _ = self.normals._read(i)
            kind = self.kinds[(i + draw) % len(self.kinds)]
            # draw 0 is seeded as the single draw always was: the default split stays what it was
            rng = np.random.default_rng([self.seed, i, 0x5EED] if draw == 0 else [self.seed, i, 0x5EED, draw])
            self._pseudo[(i, draw)] = (*pseudo_anomaly(image, kind, rng, self.difficulty), kind)
        return self._pseudo[(i, draw)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.normals)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        if index < n:
            return self.normals[index]
        draw, i = divmod(index - n, n)
        image, mask, kind = self.pseudo(i, draw)
        return self.normals.item(image, mask, 1, f"pseudo_{kind}", str(self.normals.samples[i].image_path))
