"""The leaderboard's figures: per-category bars across variants, the paired differences with their
intervals, and the PRO curves per variant (matplotlib, files only). Numbers come from masf/report/leaderboard.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from masf.records import pro_curve_from_statistics
from masf.report import intervals
from masf.report.leaderboard import (DEFAULT_METRICS, METRICS, SELECTIONS, RecordSource, _finished, _seeds,  # noqa: E402
                              ablation_numbers, category_numbers, check_choice, variants_in)


def _no_means(nums: pd.DataFrame) -> pd.DataFrame:
    """``category_numbers`` without its mean rows (one per dataset in rows spanning datasets)."""
    return nums[[(k[-1] if isinstance(k, tuple) else k) != "mean" for k in nums.index]]


def _label(category) -> str:
    """A category, or 'dataset / category' across datasets."""
    return " / ".join(category) if isinstance(category, tuple) else str(category)


def category_bars(df: pd.DataFrame, path: Path, selection: str = "last", metric: str = "image_auroc") -> Path:
    """Grouped bars: one group per category (per dataset and category across datasets), one bar per variant,
    error bars = sample std over seeds."""
    check_choice(metric, list(METRICS), "metric")
    variants = variants_in(df)
    per = {v: _no_means(category_numbers(df, v, selection)) for v in variants}
    cats = sorted({c for p in per.values() for c in p.index})
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(min(24.0, 2.0 + 0.35 * len(cats) * len(variants) + 0.5 * len(cats)), 4.5))
    means = pd.concat([p[f"{metric}_mean"] for p in per.values()])
    low = max(0.0, math.floor((means.min() if means.notna().any() else 50.0) - 5.0))
    for i, v in enumerate(variants):
        cn = per[v].reindex(cats)
        x = np.arange(len(cats)) + (i - (len(variants) - 1) / 2) * width
        mean, std = cn[f"{metric}_mean"].to_numpy(float), cn[f"{metric}_std"].to_numpy(float)
        ax.bar(x, np.where(np.isnan(mean), 0.0, mean - low), width, bottom=low, label=v)
        spread = ~np.isnan(std)  # one seed: no error bar rather than a zero one
        ax.errorbar(x[spread], mean[spread], yerr=std[spread], fmt="none", ecolor="black", capsize=2)
        for xi, m, status in zip(x, mean, cn.status.fillna("missing")):
            if np.isnan(m):
                ax.text(xi, low + 0.5, "missing" if status == "missing" else status, rotation=90, ha="center", va="bottom", fontsize=7, color="red")
    ax.set_xticks(np.arange(len(cats)), [_label(c) for c in cats], rotation=30, ha="right")
    ax.set_ylim(low, 100.0)
    ax.set_ylabel(f"{METRICS[metric]} (%)")
    done = df[df.status.eq("finished")]
    ax.set_title(f"{METRICS[metric]} per category, {SELECTIONS[selection]}; "
                 f"{_seeds(done.seed.unique().tolist()) if len(done) else 'no finished seeds'}; error bars: std over seeds", fontsize=10)
    ax.legend(fontsize=8, ncol=min(4, len(variants)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def paired_figure(nums: pd.DataFrame, path: Path, metrics: Sequence[str] = DEFAULT_METRICS, reference: str = "full",
                  title: str = "") -> Path:
    """The paired differences with their 95 % intervals: one row per variant, one panel per metric (``ablation_numbers``
    or ``paired_category_numbers`` rows)."""
    rows = [v for v in nums.index if (v[-1] if isinstance(v, tuple) else v) != reference
            and nums.loc[v, [f"delta_{m}" for m in metrics]].notna().any()]
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.5, nrows * (0.45 * max(1, len(rows)) + 1.4)), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    y = np.arange(len(rows))[::-1]
    for ax, m in zip(axes.flat, metrics):
        d = nums.loc[rows, f"delta_{m}"].to_numpy(float) if rows else np.array([])
        lo, hi = (nums.loc[rows, f"{k}_{m}"].to_numpy(float) if rows else np.array([]) for k in ("low", "high"))
        has = ~np.isnan(lo) & ~np.isnan(hi)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.errorbar(d[has], y[has], xerr=[d[has] - lo[has], hi[has] - d[has]], fmt="o", color="black", ecolor="black", capsize=3)
        ax.plot(d[~has], y[~has], "o", mfc="white", color="black")  # no interval: hollow
        for yi, di, excl in zip(y, d, [intervals.excludes_zero(a, b) for a, b in zip(lo, hi)]):
            if excl:
                ax.annotate("*", (di, yi), textcoords="offset points", xytext=(0, 5), ha="center")
        ax.set_title(f"Δ {METRICS[m]} (pp)", fontsize=9)
        ax.set_yticks(y, [_label(r) for r in rows])
    fig.suptitle(title or f"paired differences vs {reference}, 95 % intervals (hollow: no interval; *: excludes 0)", fontsize=9, y=1.0)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def pro_curves_figure(df: pd.DataFrame, records: RecordSource, path: Path, selection: str = "last") -> Path:
    """PRO against FPR up to the PRO limit, one panel per category, one line per variant (mean over its seeds' curves on
    one FPR grid), from the trials' per-image records; a variant without records is left out and named in the title."""
    cats = sorted(set(zip(df.dataset_label, df.category)))  # a category of each dataset apart
    variants = variants_in(df)
    fig, axes = plt.subplots(1, len(cats), figsize=(4.2 * len(cats), 3.6), squeeze=False)
    missing: set[str] = set()
    limit = 0.3
    for ax, (label, cat) in zip(axes[0], cats):
        for v in variants:
            ok = _finished(df[(df.variant == v) & (df.dataset_label == label) & (df.category == cat)], selection)
            recs = [r for r in (records(rid, selection) for rid in ok.run_id) if r is not None]
            if not recs:
                missing.add(v) if len(ok) else None
                continue
            limit = float(recs[0]["fpr_limit"])
            grid = np.linspace(0.0, limit, 200)
            curves = [np.interp(grid, *pro_curve_from_statistics(r)) for r in recs]
            ax.plot(grid, np.mean(curves, axis=0), label=f"{v} ({len(recs)} seed{'s' if len(recs) > 1 else ''})")
        ax.set_xlim(0.0, limit)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("FPR")
        ax.set_ylabel("PRO")
        ax.set_title(f"{label} / {cat}" if len({d for d, _ in cats}) > 1 else cat, fontsize=9)
        if ax.get_lines():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5 * limit, 0.5, "no per-image records", ha="center", fontsize=8, color="red")
    fig.suptitle(f"PRO curves up to FPR {limit:g}, {SELECTIONS[selection]}" + (f"; no per-image records: {', '.join(sorted(missing))}" if missing else ""), fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


FIGURES = ("category_bars.png", "paired_differences.png", "pro_curves.png")


def write_figures(df: pd.DataFrame, folder: Path, selection: str = "last", records: Optional[RecordSource] = None,
                  reference: str = "full", metrics: Sequence[str] = DEFAULT_METRICS, nums: Optional[pd.DataFrame] = None,
                  names: Sequence[str] = FIGURES) -> list[Path]:
    """The bars, with several variants the paired differences, with records the PRO curves, as ``names`` in ``folder``.
    ``nums``: the ``ablation_numbers`` already computed (the bootstrap is not run again)."""
    folder = Path(folder)
    paths = [category_bars(df, folder / names[0], selection)]
    if len(variants_in(df)) > 1:
        nums = nums if nums is not None else ablation_numbers(df, selection, reference, records)
        paths.append(paired_figure(nums, folder / names[1], metrics, reference))
    if records is not None:
        paths.append(pro_curves_figure(df, records, folder / names[2], selection))
    return paths
