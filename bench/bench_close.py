"""The close of a sweep: its leaderboard files (markdown of every selection with paired bootstraps, csv,
figures), written the way `masf-bench run` writes them and the way it did before, side by side.

"now": ``write_sweep_leaderboard`` as the sweep calls it: the rows read once (passed in), the figures
reuse the ablation table's numbers, a pair's bootstrap is computed once for records alike (the
selections of one epoch) and the categories' draws run in threads. "before": the same files with
none of that: every table and figure bootstraps its own pairs, in one thread. Both run on one
finished sweep's store, alternating, --repeats times each; the ratio is taken per repeat.

    python -m bench.bench_close --store DIR [--experiment masf-bench] [--sweep NAME] [--repeats 3] [--out FILE] [--smoke-test]

DIR: the working folder of a finished `masf-bench run` (its mlflow.db and masf-runs/); NAME: one of
its sweeps (default: its only one). --smoke-test: one repeat; prints only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import smoke
from bench.report import emit
from masf.report import intervals
from masf.report.figures import write_figures
from masf.report.store import MlflowRecords, load_frame, markdown_report, trial_rows, write_sweep_leaderboard
from masf.runner.tracking import default_tracking_uri


class _Forget(dict):
    """A memo that keeps nothing: every pair is bootstrapped again."""

    def __setitem__(self, key, value) -> None:
        pass


def before(uri: str, experiment: str, sweep: str, folder: Path) -> None:
    df = load_frame(uri, experiment, sweep)
    records = MlflowRecords(uri)
    (folder / "leaderboard.md").write_text(markdown_report(df, records))
    trial_rows(df).to_csv(folder / "leaderboard.csv", index=False)
    write_figures(df, folder, records=records)


def now(uri: str, experiment: str, sweep: str, folder: Path) -> None:
    write_sweep_leaderboard(uri, experiment, folder, sweep=sweep, frame=load_frame(uri, experiment, sweep))


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--experiment", default="masf-bench")
    ap.add_argument("--sweep", default=None, help="the sweep (a folder of DIR/masf-runs); default: the store's only one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.repeats = 1
    uri = default_tracking_uri(args.store)
    sweeps = sorted(p.parent.name for p in (args.store / "masf-runs").glob("*/startup.json"))
    if args.sweep is None and len(sweeps) != 1:
        raise SystemExit(f"{args.store / 'masf-runs'} holds {len(sweeps)} sweeps ({', '.join(sweeps) or 'none'}): pick one with --sweep")
    sweep = args.sweep or sweeps[0]
    pool, memo = intervals.ThreadPoolExecutor, intervals._DRAWN
    rows = []
    try:
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                intervals.ThreadPoolExecutor, intervals._DRAWN = (lambda max_workers: ThreadPoolExecutor(max_workers=1)), _Forget()
                old = timed(before, uri, args.experiment, sweep, Path(a))
                intervals.ThreadPoolExecutor, intervals._DRAWN = pool, memo
                memo.clear()
                new = timed(now, uri, args.experiment, sweep, Path(b))
                same = (Path(a) / "leaderboard.md").read_text() == (Path(b) / "leaderboard.md").read_text()
            rows.append((old, new, same))
    finally:  # the module as it was, also when "before" fails (this may run inside another program)
        intervals.ThreadPoolExecutor, intervals._DRAWN = pool, memo
    lines = [
        "## The close of a sweep: its leaderboard files, now and before",
        "",
        f"- command: `python -m bench.bench_close --store DIR --repeats {args.repeats}{' --smoke-test' if args.smoke_test else ''}` (sweep {sweep})",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d')}",
        "",
        "| repeat | before, s | now, s | before / now | same leaderboard.md |",
        "|---|---:|---:|---:|---|",
        *[f"| {i} | {o:.2f} | {n:.2f} | {o / n:.2f} | {'yes' if s else 'NO'} |" for i, (o, n, s) in enumerate(rows, 1)],
        f"| median | {statistics.median(r[0] for r in rows):.2f} | {statistics.median(r[1] for r in rows):.2f} | "
        f"{statistics.median(r[0] / r[1] for r in rows):.2f} | |",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
