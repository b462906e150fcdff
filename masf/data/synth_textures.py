"""The five texture categories of the synthetic dataset: carpet, grid, leather, tile, wood.

Each texture fills the whole image; normal images differ in phase, angle,
colour, lighting and in all of their noise, so no two are copies.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from masf.data import synth_defects as d
from masf.data.synth_draw import (
    F32, Canvas, CategorySpec, Scene, cover, jitter_color, light_ramp, local, paint, pick_point, sd_circle, sd_polyline, smooth_noise,
)


def _finish(c: Canvas, rng: np.random.Generator, img: np.ndarray, lighting: float = 0.12) -> np.ndarray:
    return np.clip(img * light_ramp(c, rng, lighting)[..., None], 0, 1).astype(F32)


def _full(c: Canvas) -> np.ndarray:
    return np.ones((c.size, c.size), F32)


def carpet(c: Canvas, rng: np.random.Generator) -> Scene:
    """Woven pile: a fine knot lattice under fibre noise and a broad mottle."""
    base = jitter_color(rng, (0.58, 0.47, 0.38), 0.05)
    period = rng.uniform(0.085, 0.095)
    v, u = local(c, 0.0, 0.0, rng.normal(0, 0.04))
    ph = rng.uniform(0, 1, 2)
    weave = np.sin(2 * np.pi * (u / period + ph[0])) * np.sin(2 * np.pi * (v / period + ph[1]))
    lum = 1 + 0.10 * weave + 0.09 * smooth_noise(rng, c.size, 0.7) + 0.06 * smooth_noise(rng, c.size, 5)
    img = _finish(c, rng, base * lum[..., None])
    return Scene(img, _full(c), img * 0.3)


def grid(c: Canvas, rng: np.random.Generator) -> Scene:
    """A diagonal wire mesh of round, lit wires over a dark backing."""
    bg_lum = rng.uniform(0.14, 0.2)
    bg = np.broadcast_to((bg_lum * (1 + 0.15 * smooth_noise(rng, c.size, 3)))[..., None], (c.size, c.size, 3)).astype(F32)
    period = rng.uniform(0.28, 0.29)
    v, u = local(c, 0.0, 0.0, np.pi / 4 + rng.normal(0, 0.015))
    half = max(1.2 * c.px, 0.018)
    wire = jitter_color(rng, (0.62, 0.62, 0.6), 0.05)
    img = bg
    lines = np.zeros((c.size, c.size), F32)
    for coord, ph in ((u, rng.uniform()), (v, rng.uniform())):
        dist = np.abs(((coord / period + ph) % 1.0) - 0.5) * period
        cov = cover(dist - half, c.px)
        shade = 0.6 + 0.4 * np.sqrt(np.clip(1 - (dist / half) ** 2, 0, 1))
        img = paint(img, cov, wire * shade[..., None])
        lines = np.maximum(lines, cov)
    img = _finish(c, rng, img * (1 + 0.04 * smooth_noise(rng, c.size, 0.8))[..., None])
    return Scene(img, _full(c), bg.copy(), {"lines": lines, "wire": wire})


def _broken(c: Canvas, s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """A wire snapped: a short piece of it gone, the backing showing through, one loose end sticking out."""
    y, x = pick_point(rng, c, s.parts["lines"])
    r = rng.uniform(0.04, 0.06) * (0.7 + 0.3 * k)
    gap = cover(sd_circle(c, y, x, r), c.px) * s.parts["lines"]
    img = paint(s.img, gap * min(1.0, 0.9 * k), s.background)
    a = rng.uniform(0, 2 * np.pi)
    end = np.array([[y + np.sin(a) * r, x + np.cos(a) * r], [y + np.sin(a) * 2.2 * r, x + np.cos(a) * 2.2 * r]])
    stub = cover(sd_polyline(c, end) - 1.1 * c.px, c.px)
    return paint(img, stub * min(1.0, 0.8 * k), s.parts["wire"] * 0.9)


def leather(c: Canvas, rng: np.random.Generator) -> Scene:
    """Grain leather: a network of fine creases on a mottled hide."""
    base = jitter_color(rng, (0.50, 0.33, 0.22), 0.06)
    creases = np.exp(-(smooth_noise(rng, c.size, 1.6) / 0.3) ** 2)
    lum = 1 - 0.22 * creases + 0.05 * smooth_noise(rng, c.size, 1.2) + 0.07 * smooth_noise(rng, c.size, 10)
    img = _finish(c, rng, base * lum[..., None])
    return Scene(img, _full(c), img * 0.3)


def tile(c: Canvas, rng: np.random.Generator) -> Scene:
    """Ceramic tiles with speckles, set in grout; every tile has its own shade."""
    period = rng.uniform(0.62, 0.7)
    v, u = local(c, 0.0, 0.0, rng.normal(0, 0.015))
    ph = rng.uniform(0, 1, 2)
    gu, gv = u / period + ph[0], v / period + ph[1]
    cell = (np.floor(gu).astype(np.int64) % 8) * 8 + (np.floor(gv).astype(np.int64) % 8)
    shades = rng.normal(0, 0.03, 64).astype(F32)
    dist = np.minimum(np.abs((gu % 1.0) - 0.5), np.abs((gv % 1.0) - 0.5))
    dist = (0.5 - dist) * period  # distance to the nearest grout line
    half = max(1.5 * c.px, 0.025)
    grout = cover(dist - half, c.px)
    bevel = np.clip(1 - (dist - half) / (3 * c.px), 0, 1) * (1 - grout)  # tile edges catch less light
    body = jitter_color(rng, (0.82, 0.80, 0.74), 0.03) * (1 + shades[cell] + 0.03 * smooth_noise(rng, c.size, 8))[..., None]
    speck = cover(-(smooth_noise(rng, c.size, 0.8) - 2.1), 0.3)
    body = paint(body * (1 - 0.12 * bevel)[..., None], speck * 0.8, np.array([0.32, 0.3, 0.27], F32))
    mortar = jitter_color(rng, (0.5, 0.49, 0.46), 0.05) * (1 + 0.1 * smooth_noise(rng, c.size, 1))[..., None]
    img = _finish(c, rng, paint(body, grout, mortar), 0.1)
    return Scene(img, _full(c), img * 0.3)


def wood(c: Canvas, rng: np.random.Generator) -> Scene:
    """Planed wood: wavy vertical growth rings and long fibres."""
    light = jitter_color(rng, (0.78, 0.58, 0.38), 0.05)
    dark = light * rng.uniform(0.68, 0.76)
    period = rng.uniform(0.16, 0.22)
    wobble = 0.6 * smooth_noise(rng, c.size, 14, aspect=3) + rng.normal(0, 0.1) * c.y
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * (c.x / period + wobble + rng.uniform()))) ** 3
    fibre = smooth_noise(rng, c.size, 0.7, aspect=8)
    t = np.clip(rings + 0.12 * fibre, 0, 1)[..., None]
    img = _finish(c, rng, (light * (1 - t) + dark * t) * (1 + 0.03 * fibre)[..., None])
    return Scene(img, _full(c), img * 0.3)


TEXTURES: dict[str, CategorySpec] = {
    "carpet": CategorySpec(carpet, {
        "color": d.stain,
        "cut": d.cut,
        "hole": d.hole,
        "metal_contamination": partial(d.particles, metal=True, fibre=False),
    }),
    "grid": CategorySpec(grid, {
        "bent": d.warp,
        "broken": _broken,
        "metal_contamination": partial(d.particles, metal=True, fibre=False, scale=1.4),
        "thread": d.thread,
    }),
    "leather": CategorySpec(leather, {
        "color": d.stain,
        "cut": d.cut,
        "fold": d.fold,
        "poke": partial(d.hole, scale=0.8),
    }),
    "tile": CategorySpec(tile, {
        "crack": d.crack,
        "gray_stroke": d.stroke,
        "oil": d.liquid,
        "rough": d.rough,
    }),
    "wood": CategorySpec(wood, {
        "color": d.color_shift,
        "hole": d.hole,
        "liquid": d.liquid,
        "scratch": d.scratch,
    }),
}
