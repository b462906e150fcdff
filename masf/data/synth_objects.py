"""Round and small objects of the synthetic dataset: bottle, cable, capsule, hazelnut, metal_nut, pill.

Each object is centred on a plain background with a little position jitter,
rotation where the real object would turn, and colour, lighting and texture
noise. An object is drawn from a parameter dict (``scene.parts["params"]``), so
defects that change the object itself (a missing core, a flipped nut, a faulty
imprint) redraw it from edited parameters and keep everything else equal.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from masf.data import synth_defects as d
from masf.data.synth_draw import (
    F32, Canvas, CategorySpec, Params, Scene, backdrop, cover, dome, glyph_strokes, jitter_color, local, paint, sd_circle,
    sd_ellipse, sd_polyline, smooth_noise, to_image,
)


# --- bottle: a round bottle seen from above, on black -------------------------------------------

def _bottle(c: Canvas, p: Params) -> Scene:
    R = p["R"]
    r = np.hypot(c.y - p["cy"], c.x - p["cx"])
    phi = np.arctan2(c.y - p["cy"], c.x - p["cx"])
    bg = p["bg"]
    body = cover(r - R, c.px)
    rel = r / R
    glass = p["glass"] * (0.55 + 0.45 * np.cos(np.pi * (rel - 0.78) / 0.45))[..., None]
    glint = 0.45 * np.exp(-((rel - 0.8) / 0.05) ** 2) * np.exp(-(np.angle(np.exp(1j * (phi - p["light"]))) / 0.5) ** 2)
    glass = glass * (1 + 0.06 * p["n"])[..., None] + glint[..., None]
    lip = cover(np.abs(rel - 0.5) * R - 0.07 * R, c.px)
    lip_col = p["glass"] * 1.7 * (1 + 0.25 * np.cos(np.pi * (rel - 0.5) / 0.07))[..., None]
    inner = cover(rel * R - 0.43 * R, c.px)
    well = p["glass"] * (0.25 + 1.2 * np.exp(-(rel / 0.22) ** 2))[..., None]
    img = paint(paint(paint(bg, body, glass), lip, lip_col), inner, well)
    parts = {"params": p, "lip": lip}
    return Scene(np.clip(img, 0, 1).astype(F32), body, bg * 0.8, parts)


def bottle(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.015), "cx": rng.normal(0, 0.015), "R": rng.uniform(0.8, 0.84),
        "light": rng.uniform(-np.pi, np.pi), "glass": jitter_color(rng, (0.30, 0.25, 0.13), 0.06),
        "bg": backdrop(c, rng, 0.05), "n": smooth_noise(rng, c.size, 1.2),
    }
    return _bottle(c, p)


# --- cable: three coloured cores in a round sheath, cross-section -------------------------------

_CORES = ((0.25, 0.6, 0.3), (0.2, 0.35, 0.75), (0.55, 0.35, 0.2))  # green, blue, brown


def _cable(c: Canvas, p: Params) -> Scene:
    R = p["R"]
    bg = p["bg"]
    sheath = cover(sd_circle(c, p["cy"], p["cx"], R), c.px)
    rr = np.hypot(c.y - p["cy"], c.x - p["cx"]) / R
    sheath_col = (0.2 * (1 + 0.15 * p["n"] + 0.1 * np.cos(rr * 40)))[..., None] * np.ones(3, F32)
    filler = cover(sd_circle(c, p["cy"], p["cx"], 0.84 * R), c.px)
    filler_col = p["filler"] * (1 + 0.05 * p["n"])[..., None]
    img = paint(paint(bg, sheath, sheath_col), filler, filler_col)
    insulation = np.zeros_like(sheath)
    for i in range(3):
        if i == p["missing"]:
            continue
        a = p["rot"] + np.pi / 2 + 2 * np.pi * i / 3
        cy, cx = p["cy"] - np.sin(a) * 0.43 * R, p["cx"] + np.cos(a) * 0.43 * R
        sd = sd_circle(c, cy, cx, 0.37 * R)
        ins = cover(sd, c.px)
        col = np.asarray(p["colors"][p["order"][i]], F32) * (0.7 + 0.45 * dome(sd, 0.2 * R))[..., None]
        img = paint(img, ins, col)
        copper = cover(sd_circle(c, cy, cx, 0.2 * R), c.px)
        img = paint(img, copper, p["copper"] * (1 + 0.25 * p["strands"])[..., None])
        insulation = np.maximum(insulation, ins - copper)
    parts = {"params": p, "insulation": insulation, "rim": cover(np.abs(rr - 0.96) * R - 0.04 * R, c.px)}
    return Scene(np.clip(img, 0, 1).astype(F32), sheath, filler_col, parts)


def cable(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.015), "cx": rng.normal(0, 0.015), "R": rng.uniform(0.84, 0.88), "rot": rng.normal(0, 0.1),
        "bg": backdrop(c, rng, 0.78), "filler": jitter_color(rng, (0.78, 0.76, 0.7), 0.04),
        "colors": [jitter_color(rng, col, 0.05) for col in _CORES], "order": (0, 1, 2), "missing": None,
        "copper": jitter_color(rng, (0.8, 0.5, 0.3), 0.05), "n": smooth_noise(rng, c.size, 2), "strands": smooth_noise(rng, c.size, 0.8),
    }
    return _cable(c, p)


def _swap(p: Params, rng: np.random.Generator, k: float) -> None:
    i, j = rng.choice(3, 2, replace=False)
    order = list(p["order"])
    order[i] = order[j]  # two cores of one colour, as a swapped cable looks
    p["order"] = tuple(order)


def _missing(p: Params, rng: np.random.Generator, k: float) -> None:
    p["missing"] = int(rng.integers(3))


# --- capsule: a two-coloured capsule lying across the image, printed "500" ---------------------

def _capsule(c: Canvas, p: Params) -> Scene:
    v, u = local(c, p["cy"], p["cx"], p["ang"])
    L, r = p["L"], p["r"]
    su, depth = p["squeeze"]
    radius = r * (1 - depth * np.exp(-((u - su) / (0.12 * L)) ** 2))
    sd = np.hypot(np.maximum(np.abs(u) - L, 0), v) - radius
    body = cover(sd, c.px)
    half = np.where(u < 0, 0, 1)[..., None]
    col = p["left"] * (1 - half) + p["right"] * half
    shade = 0.55 + 0.45 * dome(sd, 0.8 * r) + 0.35 * np.exp(-((v + 0.45 * radius) / (0.12 * r)) ** 2)
    img = paint(p["bg"], body, col * shade[..., None] * (1 + 0.04 * p["n"])[..., None])
    seam = cover(np.abs(u) - 0.6 * c.px, c.px) * body
    img = paint(img, seam * 0.5, np.zeros(3, F32))
    ink = np.full(body.shape, np.inf, F32)
    for i, seg in enumerate(glyph_strokes("500", 0.16, 0.08, 0.035)):
        if i not in p["drop"]:
            pts = to_image(seg + np.array([0.0, 0.5 * L]) + p["print_shift"], p["cy"], p["cx"], p["ang"])
            ink = np.minimum(ink, sd_polyline(c, pts))
    img = paint(img, cover(ink - 0.9 * c.px, c.px) * body * 0.85, np.array([0.9, 0.88, 0.85], F32))
    return Scene(np.clip(img, 0, 1).astype(F32), body, p["bg"], {"params": p})


def capsule(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.02), "cx": rng.normal(0, 0.02), "ang": rng.normal(0, 0.04),
        "L": rng.uniform(0.56, 0.6), "r": rng.uniform(0.22, 0.24), "squeeze": (0.0, 0.0),
        "left": jitter_color(rng, (0.85, 0.45, 0.15), 0.05), "right": jitter_color(rng, (0.2, 0.15, 0.12), 0.08),
        "bg": backdrop(c, rng, 0.72), "n": smooth_noise(rng, c.size, 1.5), "drop": (), "print_shift": np.zeros(2),
    }
    return _capsule(c, p)


def _squeeze(p: Params, rng: np.random.Generator, k: float) -> None:
    p["squeeze"] = (rng.uniform(-0.7, 0.7) * p["L"], rng.uniform(0.15, 0.3) * k)


def _imprint(p: Params, rng: np.random.Generator, k: float) -> None:
    n = len(glyph_strokes(p.get("text", "500"), 1, 1, 0))
    if rng.random() < 0.6:
        p["drop"] = tuple(rng.choice(n, int(rng.integers(2, 5)), replace=False))
    else:  # the print smudged sideways
        p["print_shift"] = rng.normal(0, 0.04 * k, 2)


# --- hazelnut: a brown nut with its tip pointing anywhere, on black ----------------------------

def _hazelnut(c: Canvas, p: Params) -> Scene:
    v, u = local(c, p["cy"], p["cx"], p["theta"])
    R = p["R"]
    phi = np.arctan2(v, u)
    radius = R * (1 + 0.2 * np.maximum(np.cos(phi), 0) ** 6 + 0.03 * np.cos(3 * phi + p["lobe"]))
    sd = np.hypot(u, v) - radius
    body = cover(sd, c.px)
    stripes = 0.5 + 0.5 * np.sin(14 * phi + 2.0 * p["n2"])
    col = p["brown"] * (0.45 + 0.6 * dome(sd, 0.5 * R) - 0.15 * stripes + 0.06 * p["n"])[..., None]
    base = cover(sd_ellipse(c, *to_image(np.array([[0.0, -0.8 * R]]), p["cy"], p["cx"], p["theta"])[0], 0.28 * R, 0.4 * R, p["theta"]), c.px, 4)
    col = paint(col, base * body * 0.7, p["brown"] * 1.4 * (1 + 0.1 * p["n"])[..., None])
    img = paint(p["bg"], body, col)
    return Scene(np.clip(img, 0, 1).astype(F32), body, p["bg"], {"params": p})


def hazelnut(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.04), "cx": rng.normal(0, 0.04), "theta": rng.uniform(-np.pi, np.pi), "R": rng.uniform(0.5, 0.56),
        "lobe": rng.uniform(0, 2 * np.pi), "brown": jitter_color(rng, (0.6, 0.38, 0.2), 0.06),
        "bg": backdrop(c, rng, 0.04), "n": smooth_noise(rng, c.size, 1.0), "n2": smooth_noise(rng, c.size, 6),
    }
    return _hazelnut(c, p)


# --- metal_nut: a four-lobed silver nut, lobes hooked one way, any rotation --------------------

def _metal_nut(c: Canvas, p: Params) -> Scene:
    v, u = local(c, p["cy"], p["cx"], p["rot"])
    R = p["R"]
    phi = np.arctan2(v, u)
    t = (phi * 2 / np.pi) % 1.0
    if p["flip"]:
        t = 1 - t  # seen from the other side the hooks point the other way
    ramp = np.where(t < 0.8, t / 0.8, (1 - t) / 0.2)
    lobe = np.floor((phi * 2 / np.pi) % 4).astype(np.int64)
    bend = np.asarray(p["bend"], F32)[lobe]
    rr = np.hypot(u, v)
    sd = rr - R * (0.8 + 0.22 * ramp * (1 + bend))
    body = cover(sd, c.px)
    hole = cover(rr - 0.3 * R, c.px)
    rings = 0.0 if p["flip"] else 0.05 * np.sin(rr / R * 60)
    lum = p["lum"] * (0.6 + 0.45 * dome(sd, 0.3 * R) + rings + 0.05 * p["n"]) * (0.92 if p["flip"] else 1.0)
    lum = lum + 0.25 * np.exp(-((rr - 0.38 * R) / (0.05 * R)) ** 2)  # bright bevel round the bore
    img = paint(paint(p["bg"], body, p["tint"] * lum[..., None]), hole, p["bg"])
    region = body * (1 - hole)
    return Scene(np.clip(img, 0, 1).astype(F32), region, p["bg"], {"params": p})


def metal_nut(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.02), "cx": rng.normal(0, 0.02), "rot": rng.uniform(-np.pi, np.pi), "R": rng.uniform(0.66, 0.7),
        "flip": False, "bend": (0.0, 0.0, 0.0, 0.0), "lum": rng.uniform(0.62, 0.72),
        "tint": jitter_color(rng, (1.0, 1.0, 0.97), 0.02), "bg": backdrop(c, rng, 0.1), "n": smooth_noise(rng, c.size, 1.0),
    }
    return _metal_nut(c, p)


def _flip(p: Params, rng: np.random.Generator, k: float) -> None:
    p["flip"] = True


def _bend(p: Params, rng: np.random.Generator, k: float) -> None:
    bend = [0.0] * 4
    bend[int(rng.integers(4))] = rng.choice([-1, 1]) * rng.uniform(0.4, 0.7) * k
    p["bend"] = tuple(bend)


# --- pill: a white oval pill with red speckles and an "FF" imprint, on black -------------------

def _pill(c: Canvas, p: Params) -> Scene:
    sd = sd_ellipse(c, p["cy"], p["cx"], p["a"], p["b"], p["ang"])
    body = cover(sd, c.px)
    lum = 0.7 + 0.35 * dome(sd, 0.5 * p["b"]) + 0.03 * p["n"]
    img = paint(p["bg"], body, p["white"] * lum[..., None])
    specks = cover(-(p["specks"] - 2.3), 0.3) * body
    img = paint(img, specks * 0.8, np.array([0.75, 0.3, 0.25], F32))
    ink = np.full(body.shape, np.inf, F32)
    for i, seg in enumerate(glyph_strokes("FF", 0.2, 0.1, 0.05)):
        if i not in p["drop"]:
            ink = np.minimum(ink, sd_polyline(c, to_image(seg + p["print_shift"], p["cy"], p["cx"], p["ang"])))
    img = paint(img, cover(ink - 1.0 * c.px, c.px) * body * 0.6, np.array([0.45, 0.25, 0.2], F32))
    return Scene(np.clip(img, 0, 1).astype(F32), body, p["bg"], {"params": p})


def pill(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.02), "cx": rng.normal(0, 0.02), "ang": rng.normal(0, 0.04), "a": rng.uniform(0.76, 0.8),
        "b": rng.uniform(0.4, 0.43), "white": jitter_color(rng, (0.9, 0.88, 0.85), 0.03), "bg": backdrop(c, rng, 0.08),
        "n": smooth_noise(rng, c.size, 1.5), "specks": smooth_noise(rng, c.size, 0.8), "drop": (), "print_shift": np.zeros(2),
        "text": "FF",
    }
    return _pill(c, p)


OBJECTS: dict[str, CategorySpec] = {
    "bottle": CategorySpec(bottle, {
        "broken_large": partial(d.chip, size=0.14, edge="lip"),
        "broken_small": partial(d.chip, size=0.06, edge="lip"),
        "contamination": d.particles,
    }),
    "cable": CategorySpec(cable, {
        "cable_swap": d.redraw(_cable, _swap),
        "cut_outer_insulation": partial(d.chip, size=0.07, edge="rim"),
        "missing_cable": d.redraw(_cable, _missing),
        "poke_insulation": d.on("insulation", partial(d.hole, scale=0.8)),
    }),
    "capsule": CategorySpec(capsule, {
        "crack": d.crack,
        "faulty_imprint": d.redraw(_capsule, _imprint),
        "poke": partial(d.hole, scale=0.6),
        "squeeze": d.redraw(_capsule, _squeeze),
    }),
    "hazelnut": CategorySpec(hazelnut, strength=0.8, defects={
        "crack": d.crack,
        "cut": d.cut,
        "hole": d.hole,
        "print": d.marks,
    }),
    "metal_nut": CategorySpec(metal_nut, strength=0.85, defects={
        "bent": d.redraw(_metal_nut, _bend),
        "color": d.color_shift,
        "flip": d.redraw(_metal_nut, _flip),
        "scratch": d.scratch,
    }),
    "pill": CategorySpec(pill, strength=1.2, defects={
        "color": partial(d.stain, color=(0.75, 0.3, 0.25)),
        "contamination": partial(d.particles, fibre=False),
        "crack": d.crack,
        "faulty_imprint": d.redraw(_pill, _imprint),
    }),
}
