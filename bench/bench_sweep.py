"""Sweep efficiency: sum of trial times / (wall time x concurrent trials) for a sweep of smoke trials.

Runs the real `masf-bench run` path (local Ray in-process, SQLite MLflow store in a temporary
working directory) on the synthetic dataset: --categories x --seeds trials of the smoke
preset. Wall time runs from the first trial's scheduling to the last trial's end (Ray's own
start is reported apart); trial time is what each trial measured for itself.

    python -m bench.bench_sweep --categories bottle,cable,capsule,carpet,grid,hazelnut,leather,metal_nut --seeds 0,1
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench.report import emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default="bottle,cable,capsule,carpet,grid,hazelnut,leather,metal_nut")
    ap.add_argument("--variants", default="full")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from masf.runner import ray_tune
    from masf.runner.plan import synthetic_root
    from masf.runner.sweep import SweepOptions, run_sweep

    root = synthetic_root()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        t0 = time.perf_counter()
        ray_tune.connect(None)
        ray_start = time.perf_counter() - t0
        opts = SweepOptions(categories=args.categories.split(","), variants=args.variants.split(","),
                            seeds=[int(s) for s in args.seeds.split(",")], preset=args.preset, data_root=str(root),
                            experiment="bench-sweep", cpus_per_trial=args.cpus_per_trial)
        t1 = time.perf_counter()
        s = run_sweep(opts, Console(quiet=True))
        total = time.perf_counter() - t1
        n = len(s.done)
    emit([
        f"- command: `python -m bench.bench_sweep --categories {args.categories} --variants {args.variants} --seeds {args.seeds} "
        f"--preset {args.preset} --cpus-per-trial {args.cpus_per_trial}`",
        f"- machine: {platform.machine()} CPU, {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d')}",
        "",
        "| trials | concurrent | Ray start (s) | sweep wall (s) | command total incl. planning + MLflow (s) | sum of trial times (s) | mean trial (s) | efficiency |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {n} | {s.concurrency} | {ray_start:.1f} | {s.wall_seconds:.1f} | {total:.1f} | {s.trial_seconds:.1f} | "
        f"{s.trial_seconds / max(1, n):.2f} | {s.efficiency:.3f} |",
    ], args.out)
    if s.failed:
        print("failed:", s.failed)


if __name__ == "__main__":
    main()
