"""Surface defects painted onto a rendered scene: scratches, cracks, holes, stains, particles, ...

Each defect is ``fn(c, scene, rng, k) -> image``: it returns a new (H, W, 3)
image and leaves the scene alone; ``k`` scales its strength (contrast and
size), which is how the generator sets how hard a category is. The ground-truth
mask is not drawn here: the generator derives it from what actually changed.
Defects of the object itself (a missing part, a swapped colour) are edits of the
object's parameters, kept with the object and turned into defects by :func:`redraw`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from masf.data.synth_draw import (
    F32, Canvas, Params, Scene, cover, dome, local, paint, pick_point, random_walk, sd_blob, sd_ellipse, sd_polyline, smooth_noise,
)

Defect = Callable[[Canvas, Scene, np.random.Generator, float], np.ndarray]


def _tone(rng: np.random.Generator, img: np.ndarray, cov: np.ndarray, amount: float, bright: Optional[bool] = None) -> np.ndarray:
    """Push ``img`` towards white or black by ``amount`` where ``cov`` is set."""
    if bright is None:
        bright = bool(rng.random() < 0.5)
    target = np.ones(3, F32) if bright else np.zeros(3, F32)
    return paint(img, cov * amount, target)


def scratch(c: Canvas, s: Scene, rng: np.random.Generator, k: float, bright: Optional[bool] = None) -> np.ndarray:
    """A thin, slightly curved bright or dark line on the surface."""
    y, x = pick_point(rng, c, s.region, margin=0.05)
    length = rng.uniform(0.15, 0.35) * (0.7 + 0.3 * k)
    a = rng.uniform(0, 2 * np.pi)
    bend = rng.normal(0, 0.04)
    pts = np.array([
        [y - np.sin(a) * length / 2, x - np.cos(a) * length / 2],
        [y + np.cos(a) * bend, x - np.sin(a) * bend],
        [y + np.sin(a) * length / 2, x + np.cos(a) * length / 2],
    ])
    half = c.px * rng.uniform(0.6, 1.0) * (0.8 + 0.2 * k)
    cov = cover(sd_polyline(c, pts) - half, c.px) * s.region
    return _tone(rng, s.img, cov, min(0.9, 0.55 * k), bright)


def crack(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A dark random-walk fracture, sometimes with a branch, with a faint light lip beside it."""
    y, x = pick_point(rng, c, s.region, margin=0.08)
    pts = random_walk(rng, (y, x), int(rng.integers(6, 11)), 0.035 * (0.7 + 0.3 * k), 0.6)
    d = sd_polyline(c, pts)
    if rng.random() < 0.5:
        j = int(rng.integers(1, len(pts) - 1))
        d = np.minimum(d, sd_polyline(c, random_walk(rng, tuple(pts[j]), 4, 0.03, 0.6)))
    half = c.px * rng.uniform(0.5, 0.9) * (0.8 + 0.2 * k)
    core = cover(d - half, c.px) * s.region
    lip = cover(d - half - c.px, c.px) * s.region - core
    img = paint(s.img, lip * 0.25 * k, np.ones(3, F32))
    return paint(img, core * min(0.95, 0.7 * k), s.img * 0.15)


def hole(c: Canvas, s: Scene, rng: np.random.Generator, k: float, scale: float = 1.0) -> np.ndarray:
    """A dark elliptic hole with a rim lit from one side."""
    y, x = pick_point(rng, c, s.region, margin=0.1)
    a = rng.uniform(0.03, 0.06) * scale * (0.7 + 0.3 * k)
    b = a * rng.uniform(0.6, 1.0)
    ang = rng.uniform(0, np.pi)
    sd = sd_ellipse(c, y, x, a, b, ang)
    rim_w = max(1.5 * c.px, 0.25 * b)
    inside = cover(sd, c.px) * s.region
    rim = cover(np.abs(sd + rim_w / 2) - rim_w / 2, c.px) * s.region
    v, u = local(c, y, x, rng.uniform(0, 2 * np.pi))
    lit = np.clip(0.5 + 0.5 * u / (np.hypot(u, v) + 1e-6), 0, 1)[..., None]
    rim_col = s.img * (0.55 + 0.9 * lit)
    img = paint(s.img, rim * min(1.0, 0.8 * k), np.clip(rim_col, 0, 1))
    depth = dome(sd, rim_w * 2)
    return paint(img, inside * min(1.0, 0.85 * k), s.img * (0.1 + 0.15 * (1 - depth[..., None])))


def stain(c: Canvas, s: Scene, rng: np.random.Generator, k: float, color: Optional[tuple[float, float, float]] = None) -> np.ndarray:
    """A soft coloured blob (dye, liquid); visibly strong only in its middle."""
    y, x = pick_point(rng, c, s.region, margin=0.05)
    r = rng.uniform(0.05, 0.11) * (0.7 + 0.3 * k)
    sd = sd_blob(c, rng, y, x, r, rough=0.35, stretch=rng.uniform(1.0, 1.8))
    cov = cover(sd, c.px, soft=rng.uniform(3, 6)) * s.region
    col = np.asarray(color if color is not None else rng.uniform(0.1, 0.9, 3), dtype=F32)
    tinted = s.img * (0.4 + 0.6 * col) + 0.25 * col  # dye multiplies and adds: keeps the texture underneath
    return paint(s.img, cov * min(0.9, 0.6 * k), np.clip(tinted, 0, 1))


def liquid(c: Canvas, s: Scene, rng: np.random.Generator, k: float, dark: bool = True) -> np.ndarray:
    """A translucent film (oil, glue, liquid): darker and glossy, with a bright sheen along one side."""
    y, x = pick_point(rng, c, s.region, margin=0.05)
    r = rng.uniform(0.06, 0.12) * (0.7 + 0.3 * k)
    sd = sd_blob(c, rng, y, x, r, rough=0.4, stretch=rng.uniform(1.0, 2.0))
    cov = cover(sd, c.px, soft=2.5) * s.region
    film = s.img * (0.55 if dark else 1.15) + (0.0 if dark else 0.08)
    v, u = local(c, y, x, rng.uniform(0, 2 * np.pi))
    sheen = np.exp(-((u - 0.4 * r) ** 2 + v**2) / (0.3 * r) ** 2)[..., None] * 0.35
    return paint(s.img, cov * min(0.95, 0.7 * k), np.clip(film + sheen, 0, 1))


def particles(
    c: Canvas, s: Scene, rng: np.random.Generator, k: float, metal: bool = False, fibre: Optional[bool] = None, scale: float = 1.0,
) -> np.ndarray:
    """Foreign matter: a few small grains (metallic glints or dark dirt) and sometimes a fibre."""
    y, x = pick_point(rng, c, s.region, margin=0.05)
    img = s.img
    for _ in range(int(rng.integers(1, 4))):
        py, px_ = y + rng.normal(0, 0.04), x + rng.normal(0, 0.04)
        sd = sd_blob(c, rng, py, px_, rng.uniform(0.012, 0.03) * scale * (0.7 + 0.3 * k), rough=0.6)
        cov = cover(sd, c.px)
        if metal:
            shade = rng.uniform(0.55, 0.95) + 0.15 * smooth_noise(rng, c.size, 0.7)[..., None]
            col = np.clip(np.broadcast_to(shade, img.shape), 0, 1)
        else:
            col = np.asarray(rng.uniform(0.05, 0.35, 3), F32)
        img = paint(img, cov * min(1.0, 0.9 * k), col)
    if fibre if fibre is not None else rng.random() < 0.4:
        pts = random_walk(rng, (y, x), 6, 0.03, 0.5)
        cov = cover(sd_polyline(c, pts) - 0.6 * c.px, c.px)
        img = _tone(rng, img, cov, min(0.9, 0.6 * k))
    return img


def thread(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A loose thread lying on the surface: a long, curvy, thin strand."""
    y, x = pick_point(rng, c, s.region, margin=0.1)
    pts = random_walk(rng, (y, x), 10, 0.04 * (0.7 + 0.3 * k), 0.45)
    cov = cover(sd_polyline(c, pts) - 0.8 * c.px, c.px)
    col = np.asarray(rng.uniform(0.1, 0.95, 3), F32)
    return paint(s.img, cov * min(0.95, 0.65 * k), col)


def color_shift(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A region whose hue and brightness are off (discolouration)."""
    y, x = pick_point(rng, c, s.region, margin=0.06)
    r = rng.uniform(0.05, 0.12) * (0.7 + 0.3 * k)
    sd = sd_blob(c, rng, y, x, r, rough=0.3, stretch=rng.uniform(1.0, 1.6))
    cov = cover(sd, c.px, soft=2.0) * s.region
    gain = np.exp(rng.normal(0, 0.35, 3) * k).astype(F32)
    gain *= np.exp(rng.choice([-1.0, 1.0]) * 0.25 * k)
    return paint(s.img, cov, np.clip(s.img * gain, 0, 1))


def cut(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A straight slit: a dark gap with a lit edge on one side."""
    y, x = pick_point(rng, c, s.region, margin=0.08)
    a = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.12, 0.25) * (0.7 + 0.3 * k)
    dy, dx = np.sin(a) * length / 2, np.cos(a) * length / 2
    pts = np.array([[y - dy, x - dx], [y + dy, x + dx]])
    half = c.px * (0.7 + 0.5 * k)
    d = sd_polyline(c, pts)
    core = cover(d - half, c.px) * s.region
    shifted = sd_polyline(c, pts + np.array([np.cos(a), -np.sin(a)]) * 2 * half)
    edge = cover(shifted - half * 0.7, c.px) * s.region * (1 - core)
    img = paint(s.img, edge * 0.35 * k, np.ones(3, F32))
    return paint(img, core * min(0.95, 0.75 * k), s.img * 0.2)


def warp(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A local bend: the surface pushed sideways inside a soft disc (bent wire, dent)."""
    y, x = pick_point(rng, c, s.region, margin=0.1)
    r = rng.uniform(0.08, 0.14)
    a = rng.uniform(0, 2 * np.pi)
    mag = rng.uniform(0.5, 0.8) * r * k
    fall = np.exp(-((c.y - y) ** 2 + (c.x - x) ** 2) / r**2)
    src_y = (c.y - np.sin(a) * mag * fall + 1) / c.px - 0.5
    src_x = (c.x - np.cos(a) * mag * fall + 1) / c.px - 0.5
    out = np.stack([ndimage.map_coordinates(s.img[..., ch], [src_y, src_x], order=1, mode="reflect") for ch in range(3)], -1)
    return out.astype(F32)


def rough(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A patch of roughened surface: extra fine-grained relief."""
    y, x = pick_point(rng, c, s.region, margin=0.06)
    r = rng.uniform(0.06, 0.12) * (0.7 + 0.3 * k)
    cov = cover(sd_blob(c, rng, y, x, r, rough=0.4), c.px, soft=3) * s.region
    grain = smooth_noise(rng, c.size, 0.8)[..., None]
    return np.clip(s.img * (1 + 0.35 * k * grain * cov[..., None]), 0, 1).astype(F32)


def fold(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A crease: a curved ridge, lit on one flank and shaded on the other."""
    y, x = pick_point(rng, c, s.region, margin=0.1)
    pts = random_walk(rng, (y, x), 4, 0.06, 0.3)
    d = sd_polyline(c, pts)
    w = 3 * c.px
    # which side of the crease a pixel is on decides light or shade
    side = np.sign(np.gradient(d, axis=1) + 0.3 * np.gradient(d, axis=0))
    ridge = np.exp(-(d / w) ** 2) * s.region
    return np.clip(s.img * (1 + 0.45 * k * side[..., None] * ridge[..., None]), 0, 1).astype(F32)


def stroke(c: Canvas, s: Scene, rng: np.random.Generator, k: float, color: tuple[float, float, float] = (0.45, 0.45, 0.45)) -> np.ndarray:
    """A broad soft pen or brush stroke of one colour."""
    y, x = pick_point(rng, c, s.region, margin=0.08)
    pts = random_walk(rng, (y, x), 3, 0.06 * (0.7 + 0.3 * k), 0.3)
    cov = cover(sd_polyline(c, pts) - 2.0 * c.px, c.px, soft=2) * s.region
    return paint(s.img, cov * min(0.9, 0.6 * k), np.asarray(color, F32))


def marks(c: Canvas, s: Scene, rng: np.random.Generator, k: float, color: tuple[float, float, float] = (0.45, 0.1, 0.35)) -> np.ndarray:
    """Stray print: a few short zig-zag ink strokes, like stamped letters."""
    y, x = pick_point(rng, c, s.region, margin=0.1)
    img = s.img
    for i in range(int(rng.integers(2, 4))):
        start = (y + rng.normal(0, 0.02), x + (i - 1) * 0.05 * (0.7 + 0.3 * k))
        pts = start + np.cumsum(rng.normal(0, 0.025, (4, 2)) * (0.7 + 0.3 * k), axis=0)
        cov = cover(sd_polyline(c, pts) - 0.7 * c.px, c.px) * s.region
        img = paint(img, cov * min(0.95, 0.7 * k), np.asarray(color, F32))
    return img


def on(part: str, defect: Defect) -> Defect:
    """The same defect, placed on one named part of the scene (``scene.parts[part]``) instead of its whole surface."""

    def placed(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
        return defect(c, replace(s, region=s.parts[part]), rng, k)

    placed.__name__ = f"{getattr(defect, '__name__', 'defect')}_on_{part}"
    return placed


def chip(c: Canvas, s: Scene, rng: np.random.Generator, k: float, size: float = 0.08, edge: str = "outline") -> np.ndarray:
    """A piece broken off at an edge: the background shows, framed by a bright fracture face."""
    if edge in s.parts:
        weight = s.parts[edge]
    else:  # a band along the inside of the surface's outline
        inside = s.region > 0.5
        weight = (inside & ~ndimage.binary_erosion(inside, iterations=3)).astype(F32)
    y, x = pick_point(rng, c, weight)
    sd = sd_blob(c, rng, y, x, size * (0.7 + 0.3 * k), rough=0.5)
    gone = cover(sd, c.px) * s.region
    face = cover(np.abs(sd) - 1.2 * c.px, c.px) * s.region * (1 - gone)
    img = paint(s.img, gone, s.background)
    return paint(img, face * min(0.9, 0.6 * k), np.clip(s.img * 1.6 + 0.15, 0, 1))


def redraw(draw: Callable[[Canvas, Params], Scene], edit: Callable[[Params, np.random.Generator, float], None]) -> Defect:
    """A defect of the object itself: redraw it from its parameters after ``edit(params, rng, k)`` changed a copy."""

    def defect(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
        p = dict(s.parts["params"])
        edit(p, rng, k)
        return draw(c, p).img

    defect.__name__ = edit.__name__.lstrip("_")
    return defect
