"""Manufactured parts of the synthetic dataset: screw, toothbrush, transistor, zipper.

Like ``synth_objects``: each part is drawn from a parameter dict, and defects
that change the part itself (a cut lead, missing teeth) redraw it from edited
parameters with everything else equal.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from masf.data import synth_defects as d
from masf.data.synth_draw import (
    F32, Canvas, CategorySpec, Params, Scene, backdrop, cover, dome, jitter_color, local, paint, sd_box, sd_circle,
    sd_polyline, smooth_noise, to_image,
)


# --- screw: a slotted screw lying on a light plate, turned this way or that ----------------------

# Screws lie within +-35 degrees of one diagonal: with a few dozen training images a
# full turn would leave every test screw at an angle no training screw had.
_SCREW_ANGLE = -np.pi / 4


def _screw(c: Canvas, p: Params) -> Scene:
    v, u = local(c, p["cy"], p["cx"], p["ang"])
    tip = p["tip"]
    taper = 0.03 if p["blunt"] else 0.18  # a ground-off front ends square instead of in a point
    w = p["w"] * np.clip((tip - u) / taper, 0.08, 1.0)
    phase = (u / p["period"] + 0.25 * v / p["w"]) % 1.0  # slanted thread crests
    tri = np.abs(phase - 0.5) * 2
    flat = (u > p["flat"][0]) & (u < p["flat"][1]) | (p["blunt"] & (u > tip - 0.08))
    relief = np.where(flat, 0.5, tri)
    sd_shaft = np.maximum(np.abs(v) - w * (1 + 0.25 * relief), np.maximum(-0.36 - u, u - tip))
    shaft = cover(sd_shaft, c.px)
    head_c = to_image(np.array([[0.0, -0.5]]), p["cy"], p["cx"], p["ang"])[0]
    sd_head = sd_circle(c, head_c[0], head_c[1], p["head"])
    head = cover(sd_head, c.px)
    shadow = cover(np.minimum(sd_shaft, sd_head) - 0.03, c.px, 6)
    img = p["bg"] * (1 - 0.25 * shadow)[..., None]
    metal = p["metal"] * (0.55 + 0.4 * dome(sd_shaft, p["w"]) * (0.6 + 0.4 * relief) + 0.04 * p["n"])[..., None]
    img = paint(img, shaft, metal)
    if p["blunt"]:
        img = paint(img, shaft * (u > tip - 0.025), np.clip(p["metal"] * 1.35, 0, 1))  # bright ground face
    img = paint(img, head, p["metal"] * (0.6 + 0.45 * dome(sd_head, 0.5 * p["head"]) + 0.04 * p["n"])[..., None])
    slot = cover(sd_box(c, head_c[0], head_c[1], 0.7 * p["head"], 0.12 * p["head"], p["slot"]), c.px) * head
    img = paint(img, slot, p["metal"] * 0.25)
    neck = shaft * (u < -0.1)
    parts = {"params": p, "head": head, "neck": neck}
    return Scene(np.clip(img, 0, 1).astype(F32), np.maximum(shaft, head), p["bg"], parts)


def screw(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.04), "cx": rng.normal(0, 0.04), "ang": _SCREW_ANGLE + rng.uniform(-0.6, 0.6), "tip": rng.uniform(0.5, 0.54),
        "w": rng.uniform(0.065, 0.075), "period": rng.uniform(0.05, 0.056), "head": rng.uniform(0.16, 0.18),
        "slot": rng.uniform(-np.pi, np.pi), "flat": (9.0, 9.0), "blunt": False,  # flat: stretch of worn thread, none
        "metal": jitter_color(rng, (0.7, 0.7, 0.72), 0.03),
        "bg": backdrop(c, rng, 0.85), "n": smooth_noise(rng, c.size, 1.0),
    }
    return _screw(c, p)


def _manipulated_front(p: Params, rng: np.random.Generator, k: float) -> None:
    p["tip"] = p["tip"] - rng.uniform(0.06, 0.14) * k  # the point ground off
    p["blunt"] = True


def _thread_side(p: Params, rng: np.random.Generator, k: float) -> None:
    start = rng.uniform(-0.25, 0.2)
    p["flat"] = (start, start + rng.uniform(0.08, 0.14) * k)  # crests flattened over a stretch


# --- toothbrush: a brush head with rows of white and blue tufts, top view ----------------------

_ROW, _COL, _TUFT = 0.165, 0.2, 0.075  # tuft pitch along and across the head, tuft radius


def _toothbrush(c: Canvas, p: Params) -> Scene:
    cy, cx, ang = p["cy"], p["cx"], p["ang"]
    plate = cover(sd_box(c, cy, cx, 0.36, 0.86, ang, rounding=0.3), c.px)  # long side vertical
    img = paint(p["bg"], plate, p["plastic"] * (1 + 0.05 * p["n"])[..., None])
    # every pixel looks only at the tuft of its own grid cell: one pass for all 30 tufts
    v, u = local(c, cy, cx, ang)
    row = np.clip(np.rint(v / _ROW + 4.5), 0, 9).astype(np.int64)
    col = np.clip(np.rint(u / _COL + 1), 0, 2).astype(np.int64)
    i = row * 3 + col
    tv, tu = p["tufts"][i, 0], p["tufts"][i, 1]
    present = np.ones(len(p["tufts"]), F32)
    for gone in (p["missing"], p["splayed"]):
        if gone is not None:
            present[gone] = 0.0
    sd = np.hypot(v - tv, u - tu) - _TUFT
    colors = np.where((row % 2 == 0)[..., None], p["white"], p["blue"])
    shade = (0.55 + 0.4 * dome(sd, _TUFT) + 0.12 * p["bristle"])[..., None]
    tufts = cover(sd, c.px) * present[i]
    img = paint(img, tufts, colors * shade)
    if p["missing"] is not None:
        y, x = to_image(p["tufts"][p["missing"]][None], cy, cx, ang)[0]
        img = paint(img, cover(sd_circle(c, y, x, 0.035), c.px), p["plastic"] * 0.45)  # the empty tuft hole
    if p["splayed"] is not None:
        j = p["splayed"]
        y, x = to_image(p["tufts"][j][None], cy, cx, ang)[0]
        sd = sd_circle(c, y, x, 1.5 * _TUFT)
        cov = cover(sd, c.px)
        col_j = p["white"] if (j // 3) % 2 == 0 else p["blue"]
        img = paint(img, cov, col_j * (0.55 + 0.4 * dome(sd, 1.5 * _TUFT) + 0.12 * p["bristle"])[..., None])
        tufts = np.maximum(tufts, cov)
    return Scene(np.clip(img, 0, 1).astype(F32), tufts, p["bg"], {"params": p})


def toothbrush(c: Canvas, rng: np.random.Generator) -> Scene:
    grid = np.array([[(row - 4.5) * _ROW, (col - 1) * _COL] for row in range(10) for col in range(3)])
    p = {
        "cy": rng.normal(0, 0.015), "cx": rng.normal(0, 0.015), "ang": rng.normal(0, 0.02),
        "tufts": grid + rng.normal(0, 0.006, grid.shape), "missing": None, "splayed": None,
        "plastic": jitter_color(rng, (0.55, 0.75, 0.85), 0.05), "white": jitter_color(rng, (0.93, 0.93, 0.92), 0.03),
        "blue": jitter_color(rng, (0.3, 0.5, 0.85), 0.05), "bg": backdrop(c, rng, 0.1),
        "n": smooth_noise(rng, c.size, 2.0), "bristle": smooth_noise(rng, c.size, 0.6),
    }
    return _toothbrush(c, p)


def _missing_tuft(p: Params, rng: np.random.Generator, k: float) -> None:
    p["missing"] = int(rng.integers(len(p["tufts"])))


def _splayed(p: Params, rng: np.random.Generator, k: float) -> None:
    i = int(rng.integers(len(p["tufts"])))
    tufts = p["tufts"].copy()
    tufts[i] = tufts[i] + rng.normal(0, 0.03 * k, 2)  # a bent tuft leans out of its row
    p["tufts"], p["splayed"] = tufts, i


# --- transistor: a TO-220 part on a board, three leads into the board ---------------------------


def _transistor(c: Canvas, p: Params) -> Scene:
    img = p["board"].copy()
    holes = np.array([[0.72, -0.22], [0.72, 0.0], [0.72, 0.22]])
    for hy, hx in holes:
        sd = sd_circle(c, hy, hx, 0.06)
        img = paint(img, cover(sd, c.px), np.array([0.78, 0.7, 0.45], F32) * (0.8 + 0.3 * dome(sd, 0.06))[..., None])
        img = paint(img, cover(sd_circle(c, hy, hx, 0.025), c.px), np.full(3, 0.1, F32))
    region = np.zeros(img.shape[:2], F32)
    if not p["absent"]:
        cy, cx, ang = p["cy"], p["cx"], p["ang"]
        tab_c = to_image(np.array([[-0.44, 0.0], [-0.46, 0.0]]), cy, cx, ang)
        tab = cover(sd_box(c, tab_c[0, 0], tab_c[0, 1], 0.3, 0.15, ang, 0.02), c.px)
        img = paint(img, tab, p["metal"] * (0.8 + 0.05 * p["n"])[..., None])
        img = paint(img, cover(sd_circle(c, tab_c[1, 0], tab_c[1, 1], 0.065), c.px), p["board"] * 0.6)
        for i, lu in enumerate((-0.22, 0.0, 0.22)):
            end = p["cut"][1] if p["cut"][0] == i else 0.72  # leads reach the board holes unless cut
            bend = p["bend"][1] if p["bend"][0] == i else 0.0
            pts = to_image(np.array([[0.1, lu], [0.42, lu + 0.3 * bend], [end, lu + bend]]), cy, cx, ang)
            sd = sd_polyline(c, pts) - 0.032
            lead = cover(sd, c.px)
            img = paint(img, lead, p["metal"] * (0.6 + 0.45 * dome(sd, 0.032))[..., None])
            region = np.maximum(region, lead)
        body_c = to_image(np.array([[-0.08, 0.0]]), cy, cx, ang)[0]
        sd = sd_box(c, body_c[0], body_c[1], 0.32, 0.22, ang, 0.02)
        body = cover(sd, c.px)
        img = paint(img, body, p["plastic"] * (1 + 0.3 * dome(sd, 0.05) + 0.08 * p["n"])[..., None])
        region = np.maximum(region, body)
        p_parts = {"body": body}
    else:
        p_parts = {"body": region}
    return Scene(np.clip(img, 0, 1).astype(F32), region, p["board"], {"params": p, **p_parts})


def transistor(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cy": rng.normal(0, 0.02), "cx": rng.normal(0, 0.02), "ang": rng.normal(0, 0.03), "absent": False,
        "cut": (-1, 0.72), "bend": (-1, 0.0), "metal": jitter_color(rng, (0.75, 0.75, 0.75), 0.04),
        "plastic": jitter_color(rng, (0.15, 0.15, 0.16), 0.08), "n": smooth_noise(rng, c.size, 1.0),
        "board": backdrop(c, rng, 0.5) * np.array([0.9, 1.0, 0.85], F32),
    }
    return _transistor(c, p)


def _bent_lead(p: Params, rng: np.random.Generator, k: float) -> None:
    p["bend"] = (int(rng.integers(3)), rng.choice([-1, 1]) * rng.uniform(0.06, 0.12) * k)


def _cut_lead(p: Params, rng: np.random.Generator, k: float) -> None:
    p["cut"] = (int(rng.integers(3)), 0.72 - rng.uniform(0.15, 0.3) * k)


def _misplaced(p: Params, rng: np.random.Generator, k: float) -> None:
    if rng.random() < 0.25:
        p["absent"] = True  # not placed at all
    else:
        p["cy"] += rng.uniform(-0.05, 0.05) * k
        p["cx"] += rng.choice([-1, 1]) * rng.uniform(0.06, 0.12) * k
        p["ang"] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * k


# --- zipper: a closed zipper running top to bottom between two fabric tapes ----------------------


def _zipper(c: Canvas, p: Params) -> Scene:
    x = c.x - p["cx"]
    weave = np.sin(np.pi * c.y / p["weave"]) * np.sin(np.pi * x / p["weave"])
    fabric = p["fabric"] * (1 + 0.08 * weave + 0.08 * p["n"])[..., None]
    img = paint(p["bg"], cover(np.abs(x) - 0.8, c.px), fabric)
    teeth = np.zeros(x.shape, F32)
    for side in (-1, 1):
        # teeth of one side sit half a period apart from the other side's, so the rows interlock
        t = (c.y - p["phase"]) / p["period"] - (0.25 if side < 0 else -0.25)
        idx = np.rint(t).astype(np.int64)
        dy = (t - idx) * p["period"]
        key = np.clip(idx + 40, 0, 79) * 2 + (side > 0)
        shift = p["shift"][key]
        dx = x - side * 0.07 - shift
        sd = np.maximum(np.abs(dx) - 0.14, np.abs(dy) - 0.027)
        cov = cover(sd, c.px) * p["present"][key]
        img = paint(img, cov, p["metal"] * (0.65 + 0.35 * dome(sd, 0.02) + 0.04 * p["n"])[..., None])
        teeth = np.maximum(teeth, cov)
    region = cover(np.abs(x) - 0.3, c.px)
    return Scene(np.clip(img, 0, 1).astype(F32), region, fabric, {"params": p, "teeth": teeth, "tape": cover(np.abs(np.abs(x) - 0.42) - 0.06, c.px)})


def zipper(c: Canvas, rng: np.random.Generator) -> Scene:
    p = {
        "cx": rng.normal(0, 0.015), "phase": rng.uniform(0, 0.12), "period": rng.uniform(0.115, 0.125),
        "weave": rng.uniform(0.03, 0.035), "fabric": jitter_color(rng, (0.25, 0.25, 0.27), 0.08),
        "metal": jitter_color(rng, (0.8, 0.8, 0.78), 0.04), "bg": backdrop(c, rng, 0.9), "n": smooth_noise(rng, c.size, 1.0),
        "shift": np.zeros(160, F32), "present": np.ones(160, F32),
    }
    return _zipper(c, p)


def _teeth_keys(p: Params, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Key of ``n`` consecutive teeth on both sides, starting from a row near the middle."""
    start = 40 + int(rng.integers(-5, 6))
    rows = np.arange(start, start + n)
    return rows * 2, rows * 2 + 1


def _broken_teeth(p: Params, rng: np.random.Generator, k: float) -> None:
    left, right = _teeth_keys(p, rng, int(rng.integers(1, 3)))
    present = p["present"].copy()
    present[left if rng.random() < 0.5 else right] = 0.0
    p["present"] = present


def _split_teeth(p: Params, rng: np.random.Generator, k: float) -> None:
    left, right = _teeth_keys(p, rng, int(rng.integers(2, 4)))
    shift = p["shift"].copy()
    gap = rng.uniform(0.04, 0.08) * k
    shift[left], shift[right] = -gap, gap  # the rows come apart
    p["shift"] = shift


PARTS: dict[str, CategorySpec] = {
    "screw": CategorySpec(screw, strength=1.5, defects={
        "manipulated_front": d.redraw(_screw, _manipulated_front),
        "scratch_head": d.on("head", d.scratch),
        "scratch_neck": d.on("neck", d.scratch),
        "thread_side": d.redraw(_screw, _thread_side),
    }),
    "toothbrush": CategorySpec(toothbrush, {
        "contamination": partial(d.particles, scale=1.4),
        "defective": d.redraw(_toothbrush, _splayed),
        "missing_tuft": d.redraw(_toothbrush, _missing_tuft),
    }),
    "transistor": CategorySpec(transistor, strength=0.55, defects={
        "bent_lead": d.redraw(_transistor, _bent_lead),
        "cut_lead": d.redraw(_transistor, _cut_lead),
        "damaged_case": d.on("body", partial(d.chip, size=0.08)),
        "misplaced": d.redraw(_transistor, _misplaced),
    }),
    "zipper": CategorySpec(zipper, strength=0.65, defects={
        "broken_teeth": d.redraw(_zipper, _broken_teeth),
        "fabric_border": d.on("tape", d.thread),
        "split_teeth": d.redraw(_zipper, _split_teeth),
        "squeezed_teeth": d.on("teeth", d.warp),
    }),
}
