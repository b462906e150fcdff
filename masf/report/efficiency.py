"""The efficiency table: what each variant costs per trial (trainable parameters, training, inference, memory)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from masf.report.datasets import datasets_in, each_dataset, stack_datasets
from masf.report.leaderboard import base_variant, variants_in
from masf.config.variants import get_variant, list_variants

EFFICIENCY_TITLE = "Efficiency: what each variant costs per trial"


# per trial: what a variant costs (trainable parameters, training, inference, memory)
EFFICIENCY = {"trainable_parameters": "trainable parameters", "train_seconds": "train s", "optimizer_steps": "optimiser steps",
              "infer_ms_per_image": "infer ms/img", "infer_ms_per_image_ttsa": "infer ms/img (TTSA)", "peak_rss_mb": "peak RSS MB",
              "peak_cuda_mb": "peak CUDA MB"}


def efficiency_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the mean (and max for memory) over finished trials of each cost in ``EFFICIENCY``."""
    rows = {}
    for v in variants_in(df):
        ok = df[(df.variant == v) & df.status.eq("finished")]
        row: dict[str, Any] = {"trials": len(ok)}
        for key in EFFICIENCY:
            vals = ok[key].dropna() if key in ok else pd.Series(dtype=float)
            row[f"{key}_mean"] = vals.mean() if len(vals) else math.nan
            row[f"{key}_std"] = vals.std(ddof=1) if len(vals) > 1 else math.nan
            row[f"{key}_max"] = vals.max() if len(vals) else math.nan
        groups = ok["training_group"].dropna().astype(str) if "training_group" in ok else pd.Series(dtype=str)
        row["shared_training"] = bool(len(groups) and groups.ne("").any() and groups.ne("nan").any())
        rows[v] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "variant"
    return out


def efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant: trainable parameters, training seconds and optimiser steps, inference ms per image with and
    without TTSA, peak memory of the trial (mean over trials; memory also the max); rows spanning datasets give
    one block per dataset (costs follow the images' number and size, so they are never averaged across)."""
    if len(datasets_in(df)) <= 1:
        return _efficiency_table(df)
    parts = each_dataset(df, _efficiency_table)
    caption = next(iter(parts.values())).attrs["caption"]  # the same for every block
    for part in parts.values():
        part.attrs.clear()  # concat compares attrs, and a frame in them has no truth value
    table = stack_datasets(parts)
    table.attrs.update(caption=caption)
    return table


def _efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    nums = efficiency_numbers(df)
    cuda = "peak_cuda_mb_mean" in nums and nums["peak_cuda_mb_mean"].notna().any()
    rows = {}
    for v, r in nums.iterrows():
        cell = lambda k, fmt="{:.1f}": "n/a" if math.isnan(r[f"{k}_mean"]) else fmt.format(r[f"{k}_mean"])  # noqa: E731
        row = {
            EFFICIENCY["trainable_parameters"]: cell("trainable_parameters", "{:,.0f}"),
            EFFICIENCY["train_seconds"]: "n/a" if math.isnan(r.train_seconds_mean) else f"{r.train_seconds_mean:.0f}"
            + ("" if math.isnan(r.train_seconds_std) else f" ± {r.train_seconds_std:.0f}"),
            EFFICIENCY["optimizer_steps"]: cell("optimizer_steps", "{:.0f}"),
            EFFICIENCY["infer_ms_per_image"]: cell("infer_ms_per_image"),
            EFFICIENCY["infer_ms_per_image_ttsa"]: cell("infer_ms_per_image_ttsa"),
            EFFICIENCY["peak_rss_mb"]: cell("peak_rss_mb", "{:.0f}") + ("" if math.isnan(r.peak_rss_mb_max) else f" (max {r.peak_rss_mb_max:.0f})"),
        }
        if cuda:
            row[EFFICIENCY["peak_cuda_mb"]] = cell("peak_cuda_mb", "{:.0f}")
        row["trials"] = int(r.trials)
        notes = ["training shared with its group (train s and steps are the group's one training)"] if r.shared_training else []
        name = base_variant(v)
        switches = get_variant(name).switches if name in list_variants() else {}
        if switches.get("model.method") in ("patchcore", "padim"):
            notes.append("no TTSA in this method: both columns time one plain pass")
        elif switches.get("model.ttsa.enabled") is False:
            notes.append("scores without TTSA: its TTSA column times the same detector with TTSA switched on")
        row["notes"] = "; ".join(notes)
        rows[v] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "variant"
    sweeps = df.attrs.get("sweeps", [])
    table.attrs.update(numbers=nums, caption=(f"sweep {', '.join(sweeps)}; " if sweeps else "") + (
                       "mean over finished trials (train s: ± sample std); infer ms/img: model.score on up to eval.timing_images "
                       "test images, the feature cache off, on the trial's device and threads; peak RSS: the trial's own high-water "
                       "mark (reset at its start, so a reused worker reports each trial alone; masf/trial/memory.py)"))
    return table
