"""Paper-style tables from a sweep's trial runs: per category (Table 3) and per variant (Table 4).

Pure pandas and matplotlib; the runs are the dicts of ``masf.runner.tracking.load_trial_runs``, one row
per trial (``runs_frame``, masf/report/rows.py).
Values are percentages, mean ± sample std (ddof=1) over the finished seeds. A failed, timed-out
(failed because the sweep's watchdog stopped it, masf/runner/watchdog.py), running or missing
trial shows as such and is left out of every mean, never counted as 0.
"last epoch" is the headline; beside it the epoch chosen on validation ("validation-selected") and
the test-selected best epoch, labelled "test-selected (paper protocol)".
A run whose variant was defined otherwise than the registry's entry of that name now (its
``variant_fingerprint`` tag differs, or it has none) is shown as its own variant,
"NAME (other definition)", so old and new definitions never merge. A MASF run of another reading
than the default (its ``reading`` tag, masf/config/readings.py) is shown as "NAME [reading]" (runs without
the tag ran the spec reading), and its deltas are taken to the reference of the same reading.
The display tables carry their numeric frame in ``table.attrs["numbers"]`` (what csv writes)
and their caption in ``table.attrs["caption"]``.

Numbers are averaged within one dataset, never across datasets: each trial has a dataset label
(``dataset_label``: the declared dataset, else its layout and data root folder), and rows of several
labels make tables of one block per dataset, each with its own mean, under a first index level
"dataset". A dataset whose trials report metrics per defect type (``<selection>/defect/<type>/<metric>``)
with MVTec LOCO's logical and structural anomalies shows their image AUROC beside the overall one;
``defect_table`` shows image AUROC and PRO per defect type for any dataset.

Every Δ to the reference is paired by seed (same seed, same data) and carries a 95 % interval: a
t interval over seeds, or with one seed a paired bootstrap over test images from the trials'
per-image records (masf/records.py; intervals in masf/report/intervals.py, fetched from MLflow by ``MlflowRecords`` in masf/report/store.py). Columns are picked
from ``METRICS`` (``pick_metrics``: default, ader, or keys); the paper's reported figures
(masf/report/paper.py) stand beside only runs declared MVTec AD; masf/report/efficiency.py gives the costs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.table import Table  # noqa: E402

from masf.errors import LeaderboardError  # noqa: E402, F401 (re-exported)
from masf.metrics import METRIC_KEYS, METRIC_LABELS, TEST_THRESHOLD_METRICS, VAL_THRESHOLD_LABELS  # noqa: E402
from masf.metrics import SELECTIONS as TRIAL_SELECTIONS  # noqa: E402
from masf.report.paper import MVTEC_AD, PAPER_METRICS, ablation_row, category_figures, dataset_name  # noqa: E402
from masf.records import StatsError
from masf.report import intervals
from masf.report.rows import (  # noqa: F401 (re-exported)
    ALL_SWEEPS, OTHER_DEFINITION, Trial, base_variant, label_suffix, pick_sweeps, planned_from_params, reading_suffix, runs_frame,
    variants_in,
)
from masf.report.datasets import (  # noqa: F401 (re-exported)
    DATASET_LEVEL, SYNTHETIC, by_dataset, dataset_label, dataset_note, datasets_in, distinct_labels, each_dataset, joined_extras,
    key_scope, per_dataset, stack_datasets,
)
from masf.errors import TIMED_OUT  # noqa: E402
from masf.config.variants import get_variant, list_variants  # noqa: E402

SELECTIONS = dict(zip(TRIAL_SELECTIONS, ("last epoch", "validation-selected", "test-selected (paper protocol)")))
FORMATS = ("table", "md", "csv", "latex")
TABLES = ("category", "ablation", "paired", "efficiency")
# every metric a table can show; † marks a threshold chosen on the test split itself (an oracle threshold)
METRICS = {m: label + "†" * (m in TEST_THRESHOLD_METRICS) for m, label in {**METRIC_LABELS, **VAL_THRESHOLD_LABELS}.items()}
DEFAULT_METRICS = ("image_auroc", "pixel_auroc", "pro", "image_ap")
# ADer's benchmark columns (image AUROC / AP / F1-max, pixel AUROC / AP / F1-max, AUPRO, IoU-max, mAD): every metric
ADER_METRICS = METRIC_KEYS
METRIC_SETS = {"default": DEFAULT_METRICS, "ader": ADER_METRICS}
TEST_THRESHOLD_NOTE = ("† threshold chosen on the test split itself (F1-max, IoU-max; mAD through its F1-max terms): "
                       "an oracle threshold, optimistic; the validation-threshold F1 is in the per-trial rows")
# the student's cosine maps alone (no TTSA, the same fusion over scales), at the last epoch, whatever the selection
STUDENT_ONLY = ("student_image_auroc", "student_only/image_auroc", "student-only image AUROC")
STUDENT_NOTE = "student-only image AUROC: the student's cosine maps alone, last epoch, no TTSA (n/a without a student)"
_TEXT = ("warnings", "notes", "interval", "reported in")  # left-aligned columns
_WORST = ["failed", TIMED_OUT, "killed", "no result", "running", "missing", "finished"]  # what a category with no result shows
DEFECT = "defect"  # per-defect-type metrics: "<selection>/defect/<type>/<metric>"
# defect types shown beside the overall image AUROC in the per-category table where present (MVTec LOCO's two kinds)
DEFECT_SPLITS = ("logical_anomalies", "structural_anomalies")
DEFECT_SPLIT_METRICS = ("image_auroc",)
DEFECT_METRICS = ("image_auroc", "pro")  # the per-defect-type table's metrics



def check_choice(value: str, choices: Sequence[str], option: str) -> str:
    if value not in choices:
        raise LeaderboardError(f"{option}: expected one of {', '.join(choices)}, got '{value}'")
    return value


def pick_metrics(spec: Union[str, Sequence[str], None]) -> tuple[str, ...]:
    """--metrics: 'default', 'ader' (the field's set) or comma-separated metric keys."""
    if spec is None:
        return DEFAULT_METRICS
    if isinstance(spec, str):
        if spec.strip() in METRIC_SETS:
            return METRIC_SETS[spec.strip()]
        spec = [p.strip() for p in spec.split(",") if p.strip()]
    picked = tuple(dict.fromkeys(spec))
    bad = [m for m in picked if m not in METRICS]
    if bad or not picked:
        raise LeaderboardError(f"--metrics: unknown metric '{bad[0] if bad else ''}' (expected default, ader or some of {', '.join(METRICS)})")
    return picked


def _threshold_note(metrics: Sequence[str]) -> str:
    return ("; " + TEST_THRESHOLD_NOTE) if any("†" in METRICS[m] for m in metrics) else ""


# ---------------------------------------------------------------- numbers


def _finished(g: pd.DataFrame, selection: str) -> pd.DataFrame:
    col = f"{selection}/image_auroc"
    return g[g.status.eq("finished") & (np.isfinite(g[col]) if col in g else False)]


def _seeds(seeds: Sequence[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, sorted(seeds)))}"


def _notes(g: pd.DataFrame, ok: pd.DataFrame, skipped: float, total: float) -> str:
    notes = []
    for (status, error), bad in g.drop(ok.index).groupby(["status", "error"], sort=False):
        error = error.removeprefix(f"{TIMED_OUT}: ") if status == TIMED_OUT else error  # "seed 0 timed out: no epoch report ..."
        notes.append(f"{_seeds(bad.seed.tolist())} {status}" + (f": {error[:80]}" if error else ""))
    if skipped > 0:
        notes.append(f"skipped {skipped:.0f}/{total:.0f} batches (non-finite loss)")
    return "; ".join(notes)


def _worst(statuses: pd.Series) -> str:
    rank = lambda s: _WORST.index(s) if s in _WORST else 0  # noqa: E731
    worst = min(statuses, key=rank)
    return "no result" if worst == "finished" else worst  # finished, but without this selection's metrics


def defect_keys(df: pd.DataFrame, selection: str) -> list[str]:
    """'defect/<type>/<metric>' of every per-defect-type metric these rows have for ``selection``, sorted."""
    prefix = f"{selection}/{DEFECT}/"
    return sorted(c.removeprefix(f"{selection}/") for c in df.columns if c.startswith(prefix) and df[c].notna().any())


def _mean_std(ok: pd.DataFrame, column: str) -> tuple[float, float]:
    """Mean and sample std in % of a metric over the finished seeds (NaN where there are none, or one for the std)."""
    vals = ok[column].dropna() * 100.0 if column in ok else pd.Series(dtype=float)
    return vals.mean() if len(vals) else math.nan, vals.std(ddof=1) if len(vals) > 1 else math.nan


def category_numbers(df: pd.DataFrame, variant: str = "full", selection: str = "last") -> pd.DataFrame:
    """Per category (sorted) and a final 'mean' row: '<metric>_mean' / '_std' in %, seeds, batches, warnings;
    the per-defect-type metrics as 'defect/<type>/<metric>_mean' / '_std'. Rows of several datasets: per dataset
    (``per_dataset``), each with its own mean row."""
    return per_dataset(_category_numbers, df, variant, selection)


def _category_numbers(df: pd.DataFrame, variant: str, selection: str) -> pd.DataFrame:
    check_choice(selection, list(SELECTIONS), "--selection")
    sub = df[df.variant == variant]
    if sub.empty:
        raise LeaderboardError(f"no trials of variant '{variant}' (variants here: {', '.join(variants_in(df))})")
    defects = defect_keys(sub, selection)
    rows: dict[str, dict[str, Any]] = {}
    for cat, g in sub.groupby("category", sort=True):
        ok = _finished(g, selection)
        row: dict[str, Any] = {}
        for m in [*METRICS, *defects]:
            row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(ok, f"{selection}/{m}")
        name, key, _ = STUDENT_ONLY
        row[f"{name}_mean"], row[f"{name}_std"] = _mean_std(ok, key)
        skipped, total = (float(ok[k].sum()) if k in ok else 0.0 for k in ("skipped_batches", "total_batches"))
        row.update(seeds_finished=len(ok), seeds_planned=len(g), skipped_batches=skipped, total_batches=total,
                   status="ok" if len(ok) == len(g) else ("partial" if len(ok) else _worst(g.status)),
                   warnings=_notes(g, ok, skipped, total))
        rows[cat] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    done = out[out.seeds_finished > 0]
    mean = {f"{m}_mean": done[f"{m}_mean"].mean() for m in [*METRICS, STUDENT_ONLY[0], *defects]}
    excluded = [c for c in out.index if c not in done.index]
    mean.update(seeds_finished=int(out.seeds_finished.sum()), seeds_planned=int(out.seeds_planned.sum()),
                skipped_batches=out.skipped_batches.sum(), total_batches=out.total_batches.sum(), status="mean",
                warnings=f"mean over {len(done)} of {len(out)} categories" + (f" (excluded: {', '.join(excluded)})" if excluded else ""))
    out.loc["mean"] = pd.Series(mean)
    out.index.name = "category"
    return out[[f"{m}_{s}" for m in [*METRICS, STUDENT_ONLY[0], *defects] for s in ("mean", "std")]
               + ["seeds_finished", "seeds_planned", "skipped_batches", "total_batches", "status", "warnings"]]


RecordSource = Callable[[str, str], Optional[dict]]  # (run id, selection) -> per-image test record (masf/records.py) or None


def _pairs(df: pd.DataFrame, variant: str, reference: str, selection: str) -> pd.DataFrame:
    """The finished (dataset, category, seed) trials both ``variant`` and ``reference`` have: their run ids and metrics ('_ref')."""
    on = ["dataset_label", "category", "seed"]
    cols = [*on, "run_id"] + [f"{selection}/{m}" for m in METRICS if f"{selection}/{m}" in df]
    a = _finished(df[df.variant == variant], selection)[cols]
    b = _finished(df[df.variant == reference], selection)[cols]
    return a.merge(b, on=on, suffixes=("", "_ref"))


def paired_interval(pairs: pd.DataFrame, selection: str, metrics: Sequence[str], records: Optional[RecordSource] = None,
                    seed: int = 0) -> dict[str, Any]:
    """Mean paired difference (variant - reference, percentage points) and its 95 % interval per metric.

    Several seeds: per seed the mean difference over its categories, then a t interval over the seeds.
    One seed: a paired bootstrap over test images (masf/report/intervals.py) from the trials' per-image records,
    when every pair has them; otherwise the difference alone.
    Returns {metric: (diff, low, high)} under 'ci', the method, seeds and categories.
    """
    metrics = [m for m in metrics if f"{selection}/{m}" in pairs]
    seeds = sorted(pairs.seed.unique())
    out: dict[str, Any] = {"ci": {}, "seeds": len(seeds), "categories": int(pairs.category.nunique()), "method": ""}
    if pairs.empty:
        out["method"] = "no paired trials"
        return out
    diff = {m: (pairs[f"{selection}/{m}"] - pairs[f"{selection}/{m}_ref"]) * 100.0 for m in metrics}
    if len(seeds) >= 2:
        for m in metrics:
            per_seed = diff[m].groupby(pairs.seed).mean()
            out["ci"][m] = intervals.t_interval(per_seed.to_numpy())
        out["method"] = f"t over {len(seeds)} seeds"
        return out
    recs = []
    if records is not None:
        for row in pairs.to_dict("records"):
            a, b = records(row["run_id"], selection), records(row["run_id_ref"], selection)
            if a is None or b is None:
                recs = []
                break
            recs.append((a, b, {m: row[f"{selection}/{m}"] for m in metrics}, {m: row[f"{selection}/{m}_ref"] for m in metrics}))
    usable = [m for m in metrics if m in METRIC_KEYS]  # what a record recomputes (not the validation-threshold F1s)
    if recs and usable:
        try:
            boot = intervals.paired_bootstrap(recs, usable, seed=seed)
        except StatsError as exc:
            boot, out["method"] = {}, f"one seed; no bootstrap: {exc}"
        for m in metrics:
            d, lo, hi = boot.get(m, (float(diff[m].mean()) / 100.0, math.nan, math.nan))
            out["ci"][m] = (d * 100.0, lo * 100.0, hi * 100.0)
        out["method"] = out["method"] or f"bootstrap over test images, 1 seed ({intervals.DRAWS} draws)"
        return out
    for m in metrics:
        out["ci"][m] = (float(diff[m].mean()), math.nan, math.nan)
    out["method"] = "1 seed, no per-image records: no interval"
    return out


def ablation_numbers(df: pd.DataFrame, selection: str = "last", reference: str = "full", records: Optional[RecordSource] = None) -> pd.DataFrame:
    """Per variant (registry order): each metric averaged over categories (seeds first) and its paired Δ vs ``reference``.

    Δ is paired by seed (same seed, same data) over the (category, seed) trials both have, with a 95 %
    interval (``paired_interval``): 'delta_M', 'low_M', 'high_M', 'excludes0_M'; 'interval' names the method.
    Rows of several datasets: per dataset (``per_dataset``).
    """
    return per_dataset(_ablation_numbers, df, selection, reference, records)


def _ablation_numbers(df: pd.DataFrame, selection: str, reference: str, records: Optional[RecordSource]) -> pd.DataFrame:
    per = {v: _category_numbers(df, v, selection).drop(index="mean") for v in variants_in(df)}
    rows = {}
    for v, cn in per.items():
        ref_name = reference + label_suffix(v)  # the reference of the same reading
        ref = per.get(ref_name)
        ref_cats = set(ref.index[ref.seeds_finished > 0]) if ref is not None else set()
        have = cn[cn.seeds_finished > 0]
        row: dict[str, Any] = {}
        shared = sorted(set(have.index) & ref_cats)
        paired = paired_interval(_pairs(df, v, ref_name, selection), selection, list(METRICS), records) if ref is not None and v != ref_name else None
        for m in METRICS:
            row[m] = have[f"{m}_mean"].mean() if len(have) else math.nan
            d, lo, hi = paired["ci"].get(m, (math.nan,) * 3) if paired else (0.0 if v == ref_name else math.nan, math.nan, math.nan)
            row.update({f"delta_{m}": d, f"low_{m}": lo, f"high_{m}": hi, f"excludes0_{m}": intervals.excludes_zero(lo, hi)})
        row.update(interval=paired["method"] if paired else "", paired_seeds=paired["seeds"] if paired else 0)
        student = have[f"{STUDENT_ONLY[0]}_mean"].dropna()
        row[STUDENT_ONLY[0]] = student.mean() if len(student) else math.nan
        notes = []
        baseline = base_variant(v) in list_variants() and get_variant(base_variant(v)).baseline
        if baseline:
            notes.append("baseline, not a MASF ablation")
        lacks = sorted(ref_cats - set(have.index))
        if v != ref_name and lacks:
            notes.append(f"lacks {', '.join(lacks)} ({ref_name} has {'it' if len(lacks) == 1 else 'them'}); Δ over {len(shared)} shared categor{'y' if len(shared) == 1 else 'ies'}")
        if ref is None:
            notes.append(f"no '{ref_name}' trials: no Δ")
        bad = [c for c in cn.index if 0 < cn.loc[c, "seeds_finished"] < cn.loc[c, "seeds_planned"]]
        if bad:
            notes.append(f"incomplete seeds in {', '.join(bad)}")
        row.update(categories=len(have), categories_planned=len(cn), baseline=baseline, notes="; ".join(notes))
        rows[v] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "variant"
    stats_cols = [f"{k}_{m}" for m in METRICS for k in ("delta", "low", "high", "excludes0")]
    return out[list(METRICS) + stats_cols + ["interval", "paired_seeds", STUDENT_ONLY[0], "categories", "categories_planned", "baseline", "notes"]]


def paired_category_numbers(df: pd.DataFrame, variant: str, selection: str = "last", reference: str = "full",
                            records: Optional[RecordSource] = None) -> pd.DataFrame:
    """Per category: the paired Δ of ``variant`` vs ``reference`` over seeds with its 95 % interval (as in the ablation
    table); rows of several datasets: per dataset (``per_dataset``)."""
    return per_dataset(_paired_category_numbers, df, variant, selection, reference, records)


def _paired_category_numbers(df: pd.DataFrame, variant: str, selection: str, reference: str,
                             records: Optional[RecordSource]) -> pd.DataFrame:
    ref_name = reference + label_suffix(variant)
    if variant not in set(df.variant):
        raise LeaderboardError(f"no trials of variant '{variant}' (variants here: {', '.join(variants_in(df))})")
    pairs = _pairs(df, variant, ref_name, selection)
    rows = {}
    for cat in sorted(df[df.variant == variant].category.unique()):
        paired = paired_interval(pairs[pairs.category == cat], selection, list(METRICS), records)
        row: dict[str, Any] = {}
        for m in METRICS:
            d, lo, hi = paired["ci"].get(m, (math.nan,) * 3)
            row.update({f"delta_{m}": d, f"low_{m}": lo, f"high_{m}": hi, f"excludes0_{m}": intervals.excludes_zero(lo, hi)})
        row.update(interval=paired["method"], paired_seeds=paired["seeds"])
        rows[cat] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "category"
    return out


# ---------------------------------------------------------------- display tables


def _pct(mean: float, std: float = math.nan) -> str:
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _caption(df: pd.DataFrame, selection: str, extra: str) -> str:
    sweeps, every = df.attrs.get("sweeps", []), df.attrs.get("all_sweeps", [])
    where = ""
    if sweeps:
        where = f"sweep {', '.join(sweeps)}" + (f" (newest of {len(every)} in the experiment; --sweep NAME or --sweep all to choose)"
                                                if len(sweeps) == 1 and len(every) > 1 else "") + "; "
    done = df[df.status.eq("finished")]
    for key in ("preset", "backbone"):  # merged sweeps may mix them: say so
        values = sorted(set(done[key]) - {""})
        where += f"mixed {key}s: {', '.join(values)}; " if len(values) > 1 else ""
    sel = SELECTIONS[selection] + {
        "last": " (headline)",
        "best_on_val": ": each trial's epoch chosen on its validation split (held-out normals and pseudo-anomalies), test metrics of that epoch",
        "best_on_test": ": each trial's best epoch chosen on the test set, optimistic",
    }[selection]
    if selection == "best_on_test" and "best_on_test_available" in done and done.best_on_test_available.eq(0).any():
        sel += (f"; not available for {int(done.best_on_test_available.eq(0).sum())} trial(s): eval.test_split=selected scored "
                "their test split only where last and best_on_val need it")
    return f"Selection: {sel}. {where}{_seeds(done.seed.unique().tolist()) if len(done) else 'no finished seeds'}; values in %; {extra}"


def declared_mvtec(df: pd.DataFrame) -> bool:
    """Every finished trial of these rows ran on data declared MVTec AD (``data.dataset``), and there is one."""
    done = df[df.status.eq("finished")]
    return len(done) > 0 and bool(done.dataset.map(dataset_name).eq(MVTEC_AD).all())


def _not_declared_note(df: pd.DataFrame) -> str:
    return ("the paper's reported figures are not shown: these runs' data was not declared MVTec AD "
            "(masf-bench run --dataset mvtec_ad); a category name alone never matches")


def _cell(r: pd.Series, key: str, status: str) -> str:
    """'mean ± std' of metric ``key`` in a numbers row, else the category's status (or n/a)."""
    return (status or "n/a") if math.isnan(r[f"{key}_mean"]) else _pct(r[f"{key}_mean"], r[f"{key}_std"])


Built = tuple[pd.DataFrame, pd.DataFrame, str]  # a dataset block: display table, numbers, caption notes


def _blocks(df: pd.DataFrame, build: Callable[[pd.DataFrame], Built]) -> Built:
    """``build`` of each dataset's rows, stacked under a first index level "dataset" (``stack_datasets``; cells a
    block lacks read "—"); the caption notes joined, with a note on the blocks. A dataset whose rows ``build``
    refuses (LeaderboardError) is left out; when every one is, the error of all the rows is raised."""
    if len(datasets_in(df)) <= 1:
        return build(df)
    built: dict[str, Built] = each_dataset(df, build)
    table = stack_datasets({k: b[0] for k, b in built.items()}).fillna("—")
    numbers = stack_datasets({k: b[1] for k, b in built.items()})
    return table, numbers, dataset_note(list(built)) + joined_extras({k: b[2] for k, b in built.items()})


CATEGORY_NOTE = ("mean ± sample std over finished seeds (one seed: the mean alone); seeds = finished/planned; "
                 "failed, timed-out, running and missing trials are left out of the means, never counted as 0; "
                 "the mean row averages the per-category means; ")
DEFECT_SPLIT_NOTE = ("; image AUROC logical / structural: the good test images against the logical (structural) "
                     "anomalies alone, as MVTec LOCO reports them")


def category_table(df: pd.DataFrame, variant: str = "full", selection: str = "last", metrics: Sequence[str] = DEFAULT_METRICS,
                   paper: bool = False) -> pd.DataFrame:
    """Table 3: categories x metrics as 'mean ± std', seeds, warnings; a 'mean' row (per dataset: ``_blocks``).
    ``paper``: beside each metric the MASF paper's reported figure and our difference to it, for data declared
    MVTec AD only. Beside the image AUROC, that of MVTec LOCO's logical and structural anomalies where the trials
    report them."""
    table, numbers, extra = _blocks(df, lambda part: _category_block(part, variant, selection, metrics, paper))
    table.attrs.update(numbers=numbers, caption=_caption(df[df.variant == variant], selection,
                       CATEGORY_NOTE + STUDENT_NOTE + extra + _threshold_note(metrics)))
    return table


def validation_note(df: pd.DataFrame) -> str:
    """Where these trials' validation normals came from, where any came from a published validation split."""
    sources = set(df.get("val_source", pd.Series(dtype=str)).dropna().astype(str)) - {""}
    if "published" not in sources:
        return ""
    mixed = " for some trials (the others carved data.val_fraction out of train)" if len(sources) > 1 else ""
    return f"; validation normals: the dataset's published validation split{mixed}, nothing carved out of train"


def _category_block(df: pd.DataFrame, variant: str, selection: str, metrics: Sequence[str], paper: bool) -> Built:
    """The per-category table of one dataset's rows."""
    nums = _category_numbers(df, variant, selection)
    sub = df[df.variant == variant]
    show_paper = paper and declared_mvtec(sub)
    splits = [t for t in DEFECT_SPLITS if any(f"{DEFECT}/{t}/{m}_mean" in nums for m in DEFECT_SPLIT_METRICS)]
    rows = {}
    for cat, r in nums.iterrows():
        status = r.status if r.status not in ("ok", "partial", "mean") else ""
        cells = {}
        reported = category_figures(str(cat), base_variant(variant)) if show_paper and cat != "mean" else None
        for m in metrics:
            label = METRICS[m]
            cells[label] = _cell(r, m, status)
            for t in splits if m in DEFECT_SPLIT_METRICS else ():
                key = f"{DEFECT}/{t}/{m}"
                cells[f"{label} {t.removesuffix('_anomalies')}"] = _cell(r, key, status) if f"{key}_mean" in nums else "n/a"
            if show_paper and m in PAPER_METRICS:
                value = reported.values.get(m) if reported else None
                cells[f"{label} reported"] = "—" if value is None else f"{value:.2f}"
                cells[f"Δ {label} vs reported"] = "—" if value is None or math.isnan(r[f"{m}_mean"]) else f"{r[f'{m}_mean'] - value:+.2f}"
        if show_paper:
            cells["reported in"] = reported.source if reported else ""
        cells[STUDENT_ONLY[2]] = _cell(r, STUDENT_ONLY[0], status)
        rows[cat] = {**cells, "seeds": f"{int(r.seeds_finished)}/{int(r.seeds_planned)}", "warnings": r.warnings}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "category"
    numbers = nums
    if show_paper:
        numbers = nums.copy()
        for m in PAPER_METRICS:
            rep = [getattr(category_figures(str(c), base_variant(variant)), "values", {}).get(m) if c != "mean" else None for c in nums.index]
            numbers[f"{m}_reported"] = [math.nan if v is None else v for v in rep]
            numbers[f"{m}_minus_reported"] = numbers[f"{m}_mean"] - numbers[f"{m}_reported"]
    extra = DEFECT_SPLIT_NOTE if splits and any(m in DEFECT_SPLIT_METRICS for m in metrics) else ""
    extra += validation_note(sub)
    if show_paper:
        extra += ("; reported = the MASF paper's figure as printed (masf/report/paper.py; 'reported in' names its table; "
                  "Table 4 rows 3-6 are the paper's estimates, not measurements), Δ = ours - reported")
    elif paper:
        extra += "; " + _not_declared_note(sub)
    return table, numbers, extra


def _delta_cell(d: float, lo: float, hi: float) -> str:
    """'+1.23 [+0.40, +2.06]*': the paired Δ, its 95 % interval, * where the interval excludes 0."""
    if math.isnan(d):
        return "n/a"
    if math.isnan(lo) or math.isnan(hi):
        return f"{d:+.2f}"
    bound = lambda x: f"{0.0 if abs(x) < 5e-3 else x:+.2f}"  # noqa: E731 - no '-0.00'
    return f"{d:+.2f} [{bound(lo)}, {bound(hi)}]" + ("*" if intervals.excludes_zero(lo, hi) else "")


INTERVAL_NOTE = ("Δ [95 % interval] = variant - {ref} in percentage points (a variant of another reading: vs the reference "
                 "of that reading), paired by seed (same seed, same data) over the "
                 "(category, seed) trials both have: with several seeds a t interval over the seeds' mean differences, with one "
                 "seed a paired bootstrap over test images (stratified, 2000 draws, from each trial's per-image records); "
                 "* = the interval excludes 0; no interval where neither is possible")


def ablation_table(df: pd.DataFrame, selection: str = "last", reference: str = "full", metrics: Sequence[str] = DEFAULT_METRICS,
                   records: Optional[RecordSource] = None, paper: bool = False) -> pd.DataFrame:
    """Table 4: variants (registry order) x metrics averaged over categories, each with its paired Δ vs ``reference``
    and 95 % interval (per dataset: ``_blocks``). ``paper``: the paper's Table 4 (Bottle) beside, when the runs
    are MVTec AD's bottle alone."""
    table, numbers, extra = _blocks(df, lambda part: _ablation_block(part, selection, reference, metrics, records, paper))
    table.attrs.update(numbers=numbers, caption=_caption(df, selection,
                       "per variant: mean over seeds per category, then over categories; " + INTERVAL_NOTE.format(ref=reference)
                       + "; failed, timed-out and missing trials left out; " + STUDENT_NOTE + extra + _threshold_note(metrics)))
    return table


def _ablation_block(df: pd.DataFrame, selection: str, reference: str, metrics: Sequence[str], records: Optional[RecordSource],
                    paper: bool) -> Built:
    """The ablation table of one dataset's rows."""
    nums = _ablation_numbers(df, selection, reference, records)
    show_paper = paper and declared_mvtec(df) and set(df[df.status.eq("finished")].category) == {"bottle"}
    rows = {}
    for v, r in nums.iterrows():
        row = {}
        reported = (ablation_row(base_variant(v)) or category_figures("bottle", base_variant(v))) if show_paper else None
        for m in metrics:
            label = METRICS[m]
            row[label] = "n/a" if math.isnan(r[m]) else f"{r[m]:.2f}"
            row[f"Δ {label}"] = "—" if v == reference else _delta_cell(r[f"delta_{m}"], r[f"low_{m}"], r[f"high_{m}"])
            if show_paper and m in PAPER_METRICS:
                value = reported.values.get(m) if reported else None
                row[f"{label} reported"] = "—" if value is None else f"{value:.2f}"
        if show_paper:
            row["reported in"] = reported.source if reported else "no paper row"
        row[STUDENT_ONLY[2]] = "n/a" if math.isnan(r[STUDENT_ONLY[0]]) else f"{r[STUDENT_ONLY[0]]:.2f}"
        row.update(categories=f"{int(r.categories)}/{int(r.categories_planned)}", interval=r.interval, notes=r.notes)
        rows[f"{v} (baseline)" if r.baseline else v] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "variant"
    extra = ""
    if show_paper:
        extra = ("; reported = the MASF paper's Table 4 on Bottle (rows 3-6: the paper's estimates, not measurements; "
                 "baselines: its Table 1; no_ttsa and bank_only have no row)")
    elif paper:
        extra = "; " + (_not_declared_note(df) if not declared_mvtec(df) else "the paper's Table 4 is on Bottle alone: shown when the runs are bottle alone")
    return table, nums, extra


def paired_category_table(df: pd.DataFrame, variant: str, selection: str = "last", reference: str = "full",
                          metrics: Sequence[str] = DEFAULT_METRICS, records: Optional[RecordSource] = None) -> pd.DataFrame:
    """Per category: ``variant`` - ``reference``, paired over seeds, with the 95 % interval of each metric (per dataset: ``_blocks``)."""
    table, numbers, extra = _blocks(df, lambda part: _paired_block(part, variant, selection, reference, metrics, records))
    table.attrs.update(numbers=numbers, caption=_caption(df[df.variant.isin([variant, reference + label_suffix(variant)])], selection,
                       INTERVAL_NOTE.format(ref=reference + label_suffix(variant)) + extra + _threshold_note(metrics)))
    return table


def _paired_block(df: pd.DataFrame, variant: str, selection: str, reference: str, metrics: Sequence[str],
                  records: Optional[RecordSource]) -> Built:
    """The paired per-category table of one dataset's rows."""
    nums = _paired_category_numbers(df, variant, selection, reference, records)
    rows = {cat: {**{f"Δ {METRICS[m]}": _delta_cell(r[f"delta_{m}"], r[f"low_{m}"], r[f"high_{m}"]) for m in metrics},
                  "interval": r.interval} for cat, r in nums.iterrows()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "category"
    return table, nums, ""


DEFECT_NOTE = ("per defect type: the metric on the good test images with the images of that type alone; "
               "a mean row averages a type over the categories that have it (types of two or more categories)")


def defect_numbers(df: pd.DataFrame, variant: str = "full", selection: str = "last") -> pd.DataFrame:
    """Per (category, defect type): each of ``DEFECT_METRICS`` as '<metric>_mean' / '_std' in % over the finished seeds,
    'seeds_finished', 'seeds_planned'; per type of two or more categories a ('mean', type) row. Per dataset
    (``per_dataset``); LeaderboardError when no trial reports metrics per defect type."""
    return per_dataset(_defect_numbers, df, variant, selection)


def _defect_numbers(df: pd.DataFrame, variant: str, selection: str) -> pd.DataFrame:
    nums = _category_numbers(df, variant, selection).drop(index="mean")
    types = sorted({k.split("/")[1] for k in defect_keys(df[df.variant == variant], selection)})
    if not types:
        raise LeaderboardError(f"no per-defect-type metrics in the {variant} trials (a trial reports them as "
                               f"{selection}/{DEFECT}/<type>/<metric>)")
    column = lambda r, t, m, s: r.get(f"{DEFECT}/{t}/{m}_{s}", math.nan)  # noqa: E731
    rows = {(cat, t): {**{f"{m}_{s}": column(r, t, m, s) for m in DEFECT_METRICS for s in ("mean", "std")},
                       "seeds_finished": r.seeds_finished, "seeds_planned": r.seeds_planned}
            for cat, r in nums.iterrows() for t in types if not math.isnan(column(r, t, "image_auroc", "mean"))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["category", "defect type"])
    by_type = out.groupby(level="defect type")
    means = by_type[[f"{m}_mean" for m in DEFECT_METRICS]].mean().join(by_type[["seeds_finished", "seeds_planned"]].sum())
    means = means[by_type.size() > 1]
    means.index = pd.MultiIndex.from_tuples([("mean", t) for t in means.index], names=out.index.names)
    return pd.concat([out, means]) if len(means) else out


def defect_table(df: pd.DataFrame, variant: str = "full", selection: str = "last") -> pd.DataFrame:
    """Image AUROC and PRO per category and defect type, 'mean ± std' over seeds, with the mean of each type
    shared by several categories (``defect_numbers``; per dataset: ``_blocks``)."""
    table, numbers, extra = _blocks(df, lambda part: _defect_block(part, variant, selection))
    table.attrs.update(numbers=numbers, caption=_caption(df[df.variant == variant], selection, DEFECT_NOTE + extra))
    return table


def _defect_block(df: pd.DataFrame, variant: str, selection: str) -> Built:
    """The per-defect-type table of one dataset's rows."""
    nums = _defect_numbers(df, variant, selection)
    rows = {k: {**{METRICS[m]: _cell(r, m, "") for m in DEFECT_METRICS},
                "seeds": f"{int(r.seeds_finished)}/{int(r.seeds_planned)}"} for k, r in nums.iterrows()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=nums.index.names)
    return table, nums, ""


def defect_title(variant: str, selection: str) -> str:
    return f"{variant}: per defect type, {SELECTIONS[selection]}"


def _latex(text: Any) -> str:
    out = "".join({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                   "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("—", "---").replace("†", r"\dag{}")


def _shown_keys(keys: list[list[str]]) -> list[list[str]]:
    """Index values as a table shows them: an outer level (the dataset) only where it changes."""
    return [[("" if i and j < len(key) - 1 and key[:j + 1] == keys[i - 1][:j + 1] else k) for j, k in enumerate(key)]
            for i, key in enumerate(keys)]


def _section_starts(keys: list[list[str]]) -> set[int]:
    """Rows a rule goes above: the first of a run of 'mean' rows, and where the outermost of several index levels changes."""
    mean = ["mean" in key for key in keys]
    return {i for i in range(1, len(keys)) if (mean[i] and not mean[i - 1]) or (len(keys[i]) > 1 and keys[i][0] != keys[i - 1][0])}


def format_table(table: pd.DataFrame, fmt: str, title: str) -> Union[str, Table]:
    """'table' a rich Table; 'md' GitHub markdown; 'csv' the numeric frame; 'latex' a booktabs table."""
    check_choice(fmt, FORMATS, "--format")
    caption = table.attrs.get("caption", "")
    levels = table.index.nlevels  # the index's columns: "dataset" first in a table spanning datasets
    header = [name or "" for name in table.index.names] + [str(c) for c in table.columns]
    keys = [[str(k) for k in (i if levels > 1 else (i,))] for i in table.index]
    body = [key + [str(v) for v in row] for key, row in zip(_shown_keys(keys), table.itertuples(index=False))]
    starts = _section_starts(keys)
    if fmt == "csv":
        return table.attrs.get("numbers", table).to_csv()
    if fmt == "table":
        rich = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
        for i, h in enumerate(header):
            text = h in _TEXT  # only notes and headers wrap; numbers and names keep their width
            width = max([len(row[i]) for row in body] + [len(w) for w in h.split()])
            rich.add_column(h, justify="left" if i < levels or text else "right", min_width=min(width, 28) if text else width)
        for i, row in enumerate(body):
            rich.add_row(*row, end_section=i + 1 in starts)
        return rich
    if fmt == "md":
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines = [f"### {title}", "", f"_{caption}_", "", "| " + " | ".join(map(cell, header)) + " |",
                 "|" + "|".join("---" if i < levels or h in _TEXT else "---:" for i, h in enumerate(header)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in body]) + "\n"
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_latex(title)}. {_latex(caption)}}}",
             r"\begin{tabular}{" + "".join("l" if i < levels or h in _TEXT else "r" for i, h in enumerate(header)) + "}", r"\toprule", " & ".join(map(_latex, header)) + r" \\", r"\midrule"]
    for i, row in enumerate(body):
        if i in starts:
            lines.append(r"\midrule")
        lines.append(" & ".join(map(_latex, row)) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def category_title(variant: str, selection: str) -> str:
    return f"{variant}: per-category results, {SELECTIONS[selection]}"


def ablation_title(selection: str) -> str:
    return f"Ablation: variants averaged over categories, {SELECTIONS[selection]}"


# ---------------------------------------------------------------- records and the sweep's files


def paired_title(variant: str, selection: str, reference: str = "full") -> str:
    return f"{variant} - {reference + label_suffix(variant)}: paired differences per category, {SELECTIONS[selection]}"
