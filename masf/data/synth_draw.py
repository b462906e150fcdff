"""Vectorised drawing for the synthetic dataset: coordinates, smooth noise, anti-aliased shapes.

Geometry lives in normalised coordinates: ``y`` and ``x`` run over [-1, 1]
across the image (y down), so a scene looks the same at any image size; the
pixel pitch ``c.px`` (= 2 / size) sets the width of anti-aliased edges. Shapes
are signed distance fields (negative inside) turned into coverage in [0, 1].
Everything works on whole arrays; there are no per-pixel Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from scipy import ndimage

F32 = np.float32
Params = dict[str, Any]  # everything an object is drawn from, noise fields included


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of a square image, each (H, W) float32 in [-1, 1]."""

    size: int
    y: np.ndarray
    x: np.ndarray

    @property
    def px(self) -> float:
        """Width of one pixel in normalised units."""
        return 2.0 / self.size


@lru_cache(maxsize=8)
def canvas(size: int) -> Canvas:
    t = ((np.arange(size, dtype=F32) + 0.5) / size * 2 - 1).astype(F32)
    y, x = np.meshgrid(t, t, indexing="ij")
    y.setflags(write=False)  # shared through the cache: nobody may draw into it
    x.setflags(write=False)
    return Canvas(size, y, x)


@dataclass
class Scene:
    """One rendered image and what defects need to know about it."""

    img: np.ndarray  # (H, W, 3) float32 in [0, 1], before sensor noise
    region: np.ndarray  # (H, W) float32 coverage of the inspected surface (object, or all of a texture)
    background: np.ndarray  # (H, W, 3) what shows where a part is missing or broken away
    parts: dict[str, Any] = field(default_factory=dict)  # named coverages and geometry of the scene


def cover(sd: np.ndarray, px: float, soft: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage of a signed distance field (negative inside); ``soft`` widens the edge in pixels."""
    return np.clip(0.5 - sd / (px * soft), 0.0, 1.0).astype(F32)


def local(c: Canvas, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (v, u) in a frame centred at (cy, cx) whose u axis points along ``angle`` (radians)."""
    dy, dx = c.y - cy, c.x - cx
    ca, sa = np.cos(angle), np.sin(angle)
    return (dy * ca - dx * sa).astype(F32), (dx * ca + dy * sa).astype(F32)


def sd_circle(c: Canvas, cy: float, cx: float, r: float) -> np.ndarray:
    return np.hypot(c.y - cy, c.x - cx) - r


def sd_ellipse(c: Canvas, cy: float, cx: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
    """Approximate signed distance of an ellipse with half-axes a (along ``angle``) and b."""
    v, u = local(c, cy, cx, angle)
    k = np.hypot(u / a, v / b)
    return (k - 1.0) * min(a, b)


def sd_box(c: Canvas, cy: float, cx: float, hu: float, hv: float, angle: float = 0.0, rounding: float = 0.0) -> np.ndarray:
    """Signed distance of a (rounded) box with half-sizes hu along ``angle`` and hv across it."""
    v, u = local(c, cy, cx, angle)
    qu, qv = np.abs(u) - hu + rounding, np.abs(v) - hv + rounding
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    return outside + np.minimum(np.maximum(qu, qv), 0) - rounding


def sd_polyline(c: Canvas, pts: np.ndarray, reach: float = 0.25) -> np.ndarray:
    """Unsigned distance to a polyline through ``pts`` (N, 2) of (y, x); subtract a half-width for a stroke.

    Distances are exact within ``reach`` of the line's bounding box; beyond it they
    are a constant ``FAR`` (strokes and their shading never reach that far), which
    keeps short strokes cheap.
    """
    best = np.full(c.y.shape, FAR, dtype=F32)
    pts = np.asarray(pts, dtype=float)
    rows = _span(pts[:, 0], reach, c)
    cols = _span(pts[:, 1], reach, c)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return best
    y, x = c.y[rows, cols], c.x[rows, cols]
    win = best[rows, cols]
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        dy, dx = y1 - y0, x1 - x0
        t = ((y - y0) * dy + (x - x0) * dx) / max(dy * dy + dx * dx, 1e-12)
        t = np.clip(t, 0.0, 1.0)
        np.minimum(win, np.hypot(y - (y0 + t * dy), x - (x0 + t * dx)), out=win)
    return best


FAR = 4.0  # farther than any two points of the canvas


def _span(v: np.ndarray, reach: float, c: Canvas) -> slice:
    """Pixel rows (or columns) covering [min(v) - reach, max(v) + reach]."""
    lo = int(np.floor((v.min() - reach + 1) / c.px))
    hi = int(np.ceil((v.max() + reach + 1) / c.px)) + 1
    return slice(max(lo, 0), min(hi, c.size))


def sd_blob(c: Canvas, rng: np.random.Generator, cy: float, cx: float, r: float, rough: float = 0.25, stretch: float = 1.0) -> np.ndarray:
    """Signed distance (approximate) of an irregular blob: a circle whose radius wobbles with the angle."""
    angle = rng.uniform(0, np.pi)
    v, u = local(c, cy, cx, angle)
    u = u / stretch
    phi = np.arctan2(v, u)
    radius = np.ones_like(phi)
    for k in (2, 3, 5):
        radius += rough / k * rng.uniform(0.3, 1.0) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return (np.hypot(u, v) - r * radius).astype(F32)


def smooth_noise(rng: np.random.Generator, size: int, sigma: float, aspect: float = 1.0) -> np.ndarray:
    """(size, size) Gaussian-filtered white noise with unit std; ``sigma`` in pixels, ``aspect`` stretches it along y.

    Broad noise is made at a coarser grid and upsampled, so every call costs about the same.
    """
    step = max(1, int(min(sigma, sigma * aspect) // 2))
    n = -(-size // step) + 2
    white = rng.standard_normal((n, n)).astype(F32)
    field_ = ndimage.gaussian_filter(white, (sigma * aspect / step, sigma / step), mode="wrap")
    if step > 1:
        field_ = ndimage.zoom(field_, step, order=1, mode="grid-wrap", grid_mode=True)
    field_ = field_[:size, :size]
    return ((field_ - field_.mean()) / (field_.std() + 1e-8)).astype(F32)


def paint(img: np.ndarray, cov: np.ndarray, color: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Composite ``color`` ((3,) or (H, W, 3)) over ``img`` with coverage ``cov`` (H, W); returns a new image."""
    out = (np.asarray(color, dtype=F32) - img).astype(F32, copy=False)
    out *= cov[..., None]
    out += img
    return out


def backdrop(c: Canvas, rng: np.random.Generator, lum: float, grain: float = 0.05) -> np.ndarray:
    """A plain (H, W, 3) backdrop of brightness ``lum`` with a faint grain and a lighting ramp."""
    base = lum * (1 + grain * smooth_noise(rng, c.size, 1.5)) * light_ramp(c, rng, 0.15)
    return np.repeat(base[..., None], 3, axis=2).astype(F32)


def jitter_color(rng: np.random.Generator, base: tuple[float, float, float], amount: float) -> np.ndarray:
    """A colour near ``base``: a common brightness change plus a smaller per-channel one."""
    base_ = np.asarray(base, dtype=F32)
    gain = 1 + rng.normal(0, amount) + rng.normal(0, amount / 2, 3)
    return np.clip(base_ * gain, 0, 1).astype(F32)


def light_ramp(c: Canvas, rng: np.random.Generator, strength: float) -> np.ndarray:
    """(H, W) multiplicative lighting gradient of random direction, 1 +- ``strength`` across the image."""
    a = rng.uniform(0, 2 * np.pi)
    s = rng.uniform(0.3, 1.0) * strength
    return (1 + s * (np.cos(a) * c.x + np.sin(a) * c.y) / 2).astype(F32)


def dome(sd: np.ndarray, depth: float) -> np.ndarray:
    """Rounded-surface shading inside a shape: 0 at the edge rising to 1 at ``depth`` inside."""
    t = np.clip(-sd / depth, 0, 1)
    return np.sqrt(t * (2 - t)).astype(F32)


def random_walk(rng: np.random.Generator, start: tuple[float, float], steps: int, step: float, turn: float) -> np.ndarray:
    """(steps + 1, 2) points of a random walk with persistent heading, as (y, x)."""
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, turn, steps))
    lengths = step * rng.uniform(0.6, 1.4, steps)
    d = np.stack([np.sin(heading) * lengths, np.cos(heading) * lengths], axis=1)
    return np.vstack([np.asarray(start, dtype=float)[None], start + np.cumsum(d, axis=0)])


def pick_point(rng: np.random.Generator, c: Canvas, weight: np.ndarray, margin: float = 0.0) -> tuple[float, float]:
    """A random (y, x) where ``weight`` is high, at least ``margin`` inside it (falls back to the centre)."""
    inside = weight > 0.5
    if margin > 0:
        inside = ndimage.binary_erosion(inside, iterations=max(1, int(margin / c.px)))
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        idx = np.flatnonzero(weight > 0.5)
    if idx.size == 0:
        return 0.0, 0.0
    k = idx[rng.integers(idx.size)]
    return float(c.y.flat[k]), float(c.x.flat[k])


@dataclass(frozen=True)
class CategorySpec:
    """One synthetic category: how to render a normal item and which defects it can have."""

    render: Callable[[Canvas, np.random.Generator], Scene]
    defects: dict[str, Callable[[Canvas, Scene, np.random.Generator, float], np.ndarray]]
    strength: float = 1.0  # multiplies every defect's contrast and size: the category's difficulty knob
    noise: float = 0.01  # std of the sensor noise added to every image


def to_image(pts: np.ndarray, cy: float, cx: float, angle: float) -> np.ndarray:
    """(N, 2) points given as (v, u) in the frame of :func:`local` -> (y, x) image coordinates."""
    ca, sa = np.cos(angle), np.sin(angle)
    v, u = pts[:, 0], pts[:, 1]
    return np.stack([cy + v * ca + u * sa, cx + u * ca - v * sa], axis=1)


# Seven-segment strokes in a unit glyph box, (v, u) from the top-left corner.
_SEGMENTS = {
    "a": ((0, 0), (0, 1)), "b": ((0, 1), (0.5, 1)), "c": ((0.5, 1), (1, 1)), "d": ((1, 0), (1, 1)),
    "e": ((0.5, 0), (1, 0)), "f": ((0, 0), (0.5, 0)), "g": ((0.5, 0), (0.5, 1)),
}
_GLYPHS = {"0": "abcdef", "5": "afgcd", "F": "afeg", "1": "bc"}


def glyph_strokes(text: str, height: float, width: float, gap: float) -> list[np.ndarray]:
    """Line segments ((2, 2) arrays of (v, u)) that spell ``text`` in seven-segment style, centred on (0, 0)."""
    strokes = []
    total = len(text) * width + (len(text) - 1) * gap
    for i, ch in enumerate(text):
        u0 = -total / 2 + i * (width + gap)
        for seg in _GLYPHS[ch]:
            (v0, a0), (v1, a1) = _SEGMENTS[seg]
            strokes.append(np.array([[(v0 - 0.5) * height, u0 + a0 * width], [(v1 - 0.5) * height, u0 + a1 * width]]))
    return strokes
