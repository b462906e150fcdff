"""A sweep's trial runs -> one row per trial: its dataset label, category, variant (with its reading and
whether its definition is the registry's), seed, status, tags and metrics; planned trials no run has as
'missing' rows. The runs are the dicts of ``masf.runner.tracking.load_trial_runs``."""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from masf.config.readings import DEFAULT_READING
from masf.config.variants import list_variants
from masf.errors import TIMED_OUT, LeaderboardError, is_timeout
from masf.fingerprint import variant_fingerprint
from masf.report.datasets import dataset_label, datasets_in, distinct_labels, key_scope
from masf.report.paper import dataset_name

OTHER_DEFINITION = " (other definition)"
ALL_SWEEPS = "all"  # --sweep all: merge every sweep of the experiment
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running", "SCHEDULED": "running"}
_INFO = ["preset", "backbone", "weights_source", "device", "dataset", "layout", "data_root", "val_source"]  # tags kept per trial
_BASE = ["sweep", "trial_key", "dataset_label", "category", "variant", "seed", "status", "error", "run_id", "start_time", *_INFO,
         "training_group"]

Trial = tuple[str, str, int]  # (category, variant, seed)


def reading_suffix(reading: str) -> str:
    """' [reading]' for a reading other than the default, else ''."""
    return f" [{reading}]" if reading and reading != DEFAULT_READING else ""


def base_variant(label: str) -> str:
    """'no_ttsa [spec] (other definition)' -> 'no_ttsa': the registry name of a table label."""
    return label.removesuffix(OTHER_DEFINITION).split(" [", 1)[0]


def label_suffix(label: str) -> str:
    """The ' [reading]' part of a table label, or ''."""
    rest = label.removesuffix(OTHER_DEFINITION)
    return rest[rest.index(" ["):] if " [" in rest else ""


def _sweep_order(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sweep names, newest first (by the latest start of any of their trials)."""
    latest: dict[str, int] = {}
    for r in runs:
        name = r.get("tag:masf.sweep", "")
        latest[name] = max(latest.get(name, 0), int(r.get("start_time") or 0))
    return sorted(latest, key=lambda s: -latest[s])


def pick_sweeps(runs: Sequence[Mapping[str, Any]], sweep: Optional[str] = None) -> list[str]:
    """The sweeps a table shows: the named one, every one ("all"), or by default the newest."""
    order = _sweep_order(runs)
    if not order:
        raise LeaderboardError("no trial runs")
    if sweep is None:
        return order[:1]
    if sweep == ALL_SWEEPS:
        return order
    if sweep not in order:
        raise LeaderboardError(f"no trial runs of sweep '{sweep}' (sweeps here: {', '.join(order)})")
    return [sweep]


def planned_from_params(params: Mapping[str, str]) -> list[Trial]:
    """The trials a sweep planned, from its parent run's params 'categories', 'variants', 'seeds'."""
    split = lambda key: [p.strip() for p in str(params.get(key, "")).split(",") if p.strip()]  # noqa: E731
    return [(c, v, int(s)) for c, v, s in itertools.product(split("categories"), split("variants"), split("seeds"))]


def _row(run: Mapping[str, Any]) -> dict[str, Any]:
    key = run.get("tag:masf.trial_key", "")
    parts = key.split("/")[-3:] if key.count("/") in (2, 3) else ["", "", "seed-1"]
    seed = run.get("tag:seed", parts[2].removeprefix("seed"))
    status = _STATUS.get(str(run.get("status")), str(run.get("status", "")).lower())
    if status == "finished" and "last/image_auroc" not in run:
        status = "no result"
    error = (str(run.get("tag:masf.error", "")).strip().splitlines() or [""])[0]
    if status == "failed" and is_timeout(error):
        status = TIMED_OUT
    variant = run.get("tag:variant", parts[1])
    fingerprint_ok = run.get("tag:variant_fingerprint") == variant_fingerprint(variant)
    if run.get("tag:method", "masf") == "masf":  # a run without the tag ran the spec reading
        variant += reading_suffix(str(run.get("tag:reading") or "spec"))
    if not fingerprint_ok:
        variant += OTHER_DEFINITION  # never merged with the registry's current definition of the name
    row = {
        "sweep": run.get("tag:masf.sweep", ""), "trial_key": key,
        "dataset_label": dataset_label(*(str(run.get(f"tag:{k}", "")) for k in ("dataset", "layout", "data_root"))),
        "category": run.get("tag:category", parts[0]),
        "variant": variant, "seed": int(seed), "status": status,
        "error": error,
        "run_id": run.get("run_id", ""), "start_time": int(run.get("start_time") or 0),
        **{k: str(run.get(f"tag:{k}", "")) for k in _INFO},
        "training_group": str(run.get("tag:masf.training_group", "")),
    }
    row.update({k: float(v) for k, v in run.items() if k not in row and not k.startswith("tag:")
                and isinstance(v, (int, float)) and not isinstance(v, bool)})
    for name in ("skipped_batches", "skipped_steps"):  # a finished trial's totals; the plain names are per epoch
        if f"{name}_total" in row:
            row[name] = row.pop(f"{name}_total")
    return row


def runs_frame(runs: Sequence[Mapping[str, Any]], sweep: Optional[str] = None, expected: Optional[Sequence[Trial]] = None) -> pd.DataFrame:
    """One row per trial key of the chosen sweep(s) (see ``pick_sweeps``), planned-but-absent trials as 'missing'.

    Several runs of one key: the FINISHED one wins, else the newest. Without ``expected``
    the plan of each sweep is, per dataset, the product of the categories, variants and seeds seen in it
    (a sweep always plans the full product). ``attrs``: 'sweeps' shown, 'all_sweeps' present.
    """
    chosen = pick_sweeps(runs, sweep)
    df = distinct_labels(pd.DataFrame([_row(r) for r in runs if r.get("tag:masf.sweep", "") in chosen]))
    df = df.assign(_done=df.status.eq("finished")).sort_values(["_done", "start_time"], ascending=False)
    df = df.drop_duplicates(["dataset_label", "category", "variant", "seed"]).drop(columns="_done")
    missing = [_missing_row(chosen, label, scope, v, s) for label, scope, v, s in sorted(_planned(df, expected) - _seen(df))]
    df = pd.concat([df, pd.DataFrame(missing, columns=_BASE)], ignore_index=True) if missing else df
    rank = {v: i for i, v in enumerate(list_variants())}
    df = df.assign(_v=df.variant.map(lambda v: rank.get(base_variant(v), len(rank)))).sort_values(["dataset_label", "category", "_v", "variant", "seed"])
    metrics = sorted([c for c in df.columns if c not in _BASE and c != "_v"], key=lambda c: (not c.startswith("last/"), not c.startswith("best_on_val/"),
                                                                                             not c.startswith("best_on_test/"), c))
    df = df[_BASE + metrics].reset_index(drop=True)
    df["seed"] = df.seed.astype(int)
    df.attrs.update(sweeps=chosen, all_sweeps=_sweep_order(runs))
    return df


def _scopes(df: pd.DataFrame) -> pd.Series:
    """Each row's key scope (``key_scope``), its category where it has no trial key."""
    return pd.Series([key_scope(k) if k.count("/") >= 2 else c for k, c in zip(df.trial_key, df.category)], index=df.index, dtype=object)


def _seen(df: pd.DataFrame) -> set[tuple[str, str, str, int]]:
    """(dataset label, key scope, variant, seed) of the rows."""
    return set(zip(df.dataset_label, _scopes(df), df.variant.map(base_variant), df.seed))


def _planned(df: pd.DataFrame, expected: Optional[Sequence[Trial]]) -> set[tuple[str, str, str, int]]:
    """(dataset label, key scope, variant, seed) of the trials planned: ``expected`` (key scopes as the sweep's
    categories param has them), else per sweep and dataset the product of the categories, variants and seeds seen."""
    if expected is None:
        plan = set()
        for (_, label), g in df.groupby(["sweep", "dataset_label"]):
            plan |= {(label, *t) for t in itertools.product(_scopes(g).unique(), g.variant.map(base_variant).unique(), g.seed.unique())}
        return plan
    labels = dict(zip(_scopes(df), df.dataset_label))
    only = datasets_in(df)
    return {(_scope_label(c, labels, only), c, v, int(s)) for c, v, s in expected}


def _scope_label(scope: str, labels: Mapping[str, str], only: Sequence[str]) -> str:
    """The dataset label of a planned key scope: that of the rows with it, else the dataset the scope names
    ('visa/pcb1'), else the rows' one label, else ''."""
    if scope in labels:
        return labels[scope]
    if "/" in scope:
        return dataset_name(scope.split("/")[0])
    return only[0] if len(only) == 1 else ""


def _missing_row(chosen: Sequence[str], label: str, scope: str, variant: str, seed: int) -> dict[str, Any]:
    """The row of a planned trial no run has."""
    return {"sweep": chosen[0] if len(chosen) == 1 else "", "trial_key": f"{scope}/{variant}/seed{seed}", "dataset_label": label,
            "category": scope.rsplit("/", 1)[-1], "variant": variant, "seed": int(seed), "status": "missing", "error": "",
            "run_id": "", "start_time": 0, **dict.fromkeys(_INFO, ""),
            "dataset": scope.split("/")[0] if "/" in scope else "", "training_group": ""}


def variants_in(df: pd.DataFrame) -> list[str]:
    """The variants present, in registry order (unregistered ones last)."""
    known = list_variants()
    present = set(df.variant)
    return [v for v in known if v in present] + sorted(present - set(known))
