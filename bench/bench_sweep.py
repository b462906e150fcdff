"""Sweep efficiency: sum of trial times / (wall time x concurrent trials) for a sweep of smoke trials.

Runs the real `masf-bench run` path (local Ray in-process, SQLite MLflow store in a temporary
working directory) on the synthetic dataset: --categories x --seeds trials of the smoke
preset. Wall time runs from the first trial's scheduling to the last trial's end (Ray's own
start is reported apart); trial time is what each trial measured for itself.

    python -m bench.bench_sweep --categories bottle,cable,capsule,carpet,grid,hazelnut,leather,metal_nut --seeds 0,1 \
        [--variants full] [--preset smoke] [--set a.b=c] [--out FILE] [--smoke-test]

--smoke-test: one trial (bottle, patchcore, seed 0, preset smoke, 8 training images, a bank of at
most 200 patches) on a small synthetic bottle generated into the temporary folder; prints only.
It starts Ray in its own process: run it as a command, not inside another Python program.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench import smoke
from bench.report import emit

SMOKE_SET = ("data.max_train_images=8", "model.samb.coreset_max=200")  # as the tests' quick sweeps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default="bottle,cable,capsule,carpet,grid,hazelnut,leather,metal_nut")
    ap.add_argument("--variants", default="full")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override a.b=c (repeatable)")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.categories, args.variants, args.seeds, args.preset = "bottle", "patchcore", "0", "smoke"
        args.overrides = [*SMOKE_SET, *args.overrides]
    from masf.runner import ray_tune
    from masf.runner.plan import synthetic_root
    from masf.runner.sweep import SweepOptions, run_sweep
    from masf.runner.tracking import default_tracking_uri

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        if args.smoke_test:
            from masf.data.synth import generate_dataset

            root = work / "data"
            generate_dataset(root, categories=args.categories.split(","), seed=0, size=64, n_train=10, n_test=8)
        else:
            root = synthetic_root()
        try:
            t0 = time.perf_counter()
            ray_tune.connect(None)
            ray_start = time.perf_counter() - t0
            # the store and the sweep's folders in the temporary working directory, as `masf-bench run` run there
            opts = SweepOptions(categories=args.categories.split(","), variants=args.variants.split(","),
                                seeds=[int(s) for s in args.seeds.split(",")], preset=args.preset, overrides=list(args.overrides),
                                data_roots=[str(root)], experiment="bench-sweep", cpus_per_trial=args.cpus_per_trial,
                                storage=str(work / "masf-runs"), tracking_uri=default_tracking_uri(work))
            t1 = time.perf_counter()
            s = run_sweep(opts, Console(quiet=True))
            total = time.perf_counter() - t1
            n = len(s.done)
        finally:
            ray_tune.shutdown()  # before its session's files in the temporary folder go
    extra = "".join(f" --set {o}" for o in args.overrides if not (args.smoke_test and o in SMOKE_SET))
    emit([
        f"- command: `python -m bench.bench_sweep --categories {args.categories} --variants {args.variants} --seeds {args.seeds} "
        f"--preset {args.preset} --cpus-per-trial {args.cpus_per_trial}{extra}{' --smoke-test' if args.smoke_test else ''}`",
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
