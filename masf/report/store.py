"""The leaderboard's side of an MLflow store: the trial rows of an experiment (``load_frame``, with the
trials its sweeps planned), the trials' per-image records (``MlflowRecords``), and a sweep's leaderboard
files (``markdown_report``, ``write_sweep_leaderboard``). The tables and their numbers are in
masf/report/leaderboard.py, the figures in masf/report/figures.py, the costs in masf/report/efficiency.py."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from masf import records
from masf.report.leaderboard import (DEFAULT_METRICS, SELECTIONS, LeaderboardError, RecordSource, Trial, ablation_table, ablation_title,
                              base_variant, category_table, category_title, declared_mvtec, format_table, label_suffix,
                              paired_category_table, paired_title, pick_sweeps, planned_from_params, runs_frame, variants_in)


class MlflowRecords:
    """The per-image test records of runs (``test_stats.npz`` artifacts, masf/records.py), fetched on first use and kept."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self._files: dict[str, Optional[dict[str, dict]]] = {}

    def __call__(self, run_id: str, selection: str) -> Optional[dict]:
        if not run_id:
            return None
        if run_id not in self._files:
            from masf.runner.tracking import read_artifact

            # a run logged before records were kept, or without them, has none: no bootstrap for it
            self._files[run_id] = read_artifact(self.tracking_uri, run_id, records.STATS_FILE, records.load_statistics)
        found = self._files[run_id]
        return found.get(selection) if found else None


def markdown_report(df: pd.DataFrame, records: Optional[RecordSource] = None, metrics: Sequence[str] = DEFAULT_METRICS,
                    numbers: Optional[dict[str, pd.DataFrame]] = None) -> str:
    """Every variant's per-category table, the ablation table with paired intervals and the per-category paired tables,
    for each selection (last, validation- and test-selected); then the efficiency table. ``numbers``: filled with each
    selection's ``ablation_numbers`` (for the figures, which then need no second bootstrap)."""
    parts = []
    paper = declared_mvtec(df)  # the paper's figures beside, for data declared MVTec AD
    for selection, label in SELECTIONS.items():
        parts.append(f"## {label}" + (" (headline)" if selection == "last" else ""))
        for v in variants_in(df):
            parts.append(format_table(category_table(df, v, selection, metrics, paper=paper), "md", category_title(v, selection)))
        if len(variants_in(df)) > 1:
            table = ablation_table(df, selection, metrics=metrics, records=records, paper=paper)
            if numbers is not None:
                numbers[selection] = table.attrs["numbers"]
            parts.append(format_table(table, "md", ablation_title(selection)))
            for v in variants_in(df):
                if base_variant(v) != "full" and ("full" + label_suffix(v)) in set(df.variant):
                    parts.append(format_table(paired_category_table(df, v, selection, metrics=metrics, records=records), "md",
                                              paired_title(v, selection)))
    from masf.report.efficiency import EFFICIENCY_TITLE, efficiency_table

    parts.append(format_table(efficiency_table(df), "md", EFFICIENCY_TITLE))
    return "# masf-bench leaderboard\n\n" + "\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


def trial_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric per-trial rows (metrics as fractions, as logged); missing trials keep empty metric cells, never 0."""
    return df.drop(columns=["start_time"])


def store_plan(tracking_uri: str, experiment: str, sweeps: Sequence[str]) -> Optional[list[Trial]]:
    """The planned trials of these sweeps, from their parent runs' params."""
    from masf.runner.tracking import load_sweep_params

    params = load_sweep_params(tracking_uri, experiment)
    plans = [planned_from_params(params[s]) for s in sweeps if s in params]
    return [t for plan in plans for t in plan] if plans else None


def load_frame(tracking_uri: str, experiment: str, sweep: Optional[str] = None) -> pd.DataFrame:
    """The trial rows of a store's experiment (see ``runs_frame``); one line of error when there are none."""
    from masf.runner.tracking import load_trial_runs

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        raise LeaderboardError(f"no MLflow store at {tracking_uri[len('sqlite:///'):]}: run `masf-bench run` first or pass --tracking-uri")
    runs = load_trial_runs(tracking_uri, experiment)
    if not runs:
        raise LeaderboardError(f"no trial runs in experiment '{experiment}' of {tracking_uri}")
    return runs_frame(runs, sweep, store_plan(tracking_uri, experiment, pick_sweeps(runs, sweep)))


def write_sweep_leaderboard(tracking_uri: str, experiment: str, folder: Path, sweep: Optional[str] = None,
                            frame: Optional[pd.DataFrame] = None) -> list[Path]:
    """folder/leaderboard.md (every selection), leaderboard.csv (per trial) and the figures (``write_figures``); the paths.
    ``frame``: the sweep's ``load_frame``, when the caller has it already."""
    df = frame if frame is not None else load_frame(tracking_uri, experiment, sweep)
    records = MlflowRecords(tracking_uri)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md, csv = folder / "leaderboard.md", folder / "leaderboard.csv"
    numbers: dict[str, pd.DataFrame] = {}
    md.write_text(markdown_report(df, records, numbers=numbers))
    trial_rows(df).to_csv(csv, index=False)
    from masf.report.figures import write_figures

    return [md, csv, *write_figures(df, folder, records=records, nums=numbers.get("last"))]
