"""Start-up of `masf-bench run`: seconds from the command to the first trial running, and where they go.

Runs the real command (a fresh process, a local Ray, the SQLite MLflow store in one temporary
working directory) --repeats times on the synthetic dataset, each run a new experiment. Run 1 is
cold where it can be: it creates the store and finds no teacher markers (masf/method/teacher_seen.py),
so the driver builds the teacher; the later runs find both, as a user's second run does. Reads
each sweep's startup.json: seconds from the process start at the end of the imports, after
planning, after the teacher check and after the store opened (both in a thread beside Ray's
start), after Ray's start, when Tune is handed the trials, when Tune starts the first trial,
when that trial's worker has loaded the trial code (torch, timm, masf), and when the first
report reached the driver (the first epoch, or a baseline's result).

    python -m bench.bench_startup --repeats 3 [--categories bottle] [--variants patchcore] [--preset demo] [--out FILE] [--smoke-test]

--smoke-test: one run of `masf-bench run --categories bottle --variants patchcore --preset smoke`
(8 training images, a bank of at most 200 patches) on a small synthetic bottle, with a cache
folder of its own (MASF_CACHE_DIR) so that run 1 is cold without touching the user's cache;
prints only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import smoke
from bench.report import emit
from masf.layout import cache_dir

PHASES = ("imports", "planned", "teachers", "store_open", "ray_started", "tune_started", "first_trial", "first_trial_code",
          "first_report")


SMOKE_SET = ("data.max_train_images=8", "model.samb.coreset_max=200")  # as the tests' quick sweeps


def one_run(args: argparse.Namespace, cwd: Path, i: int, extra: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> dict[str, float]:
    """One `masf-bench run` in ``cwd``: its startup.json marks; ``extra``: more arguments, ``env``: more environment."""
    storage = cwd / f"runs-{i}"
    cmd = [sys.executable, "-m", "masf.cli.main", "run", "--categories", args.categories, "--variants", args.variants,
           "--preset", args.preset, "--experiment", f"startup-{i}", "--storage", str(storage), *extra]
    t0 = time.time()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})})
    wall = time.time() - t0
    if out.returncode != 0:
        raise SystemExit(f"masf-bench run failed ({out.returncode}): {out.stderr[-2000:]}")
    marks = json.loads(next(storage.glob("*/startup.json")).read_text())
    stderr_lines = [l for l in out.stderr.splitlines() if l.strip()]
    return {**marks, "command_s": round(wall, 2), "stderr_lines": len(stderr_lines)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default="bottle")
    ap.add_argument("--variants", default="patchcore")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        extra: tuple[str, ...] = ()
        env: dict[str, str] = {}
        if args.smoke_test:
            from masf.data.synth import generate_dataset

            smoke.check_out(args.out)
            args.categories, args.variants, args.preset, args.repeats = "bottle", "patchcore", "smoke", 1
            data = Path(tmp) / "data"
            generate_dataset(data, categories=["bottle"], seed=0, size=64, n_train=10, n_test=8)
            extra = ("--data-root", str(data), *(a for o in SMOKE_SET for a in ("--set", o)))
            env = {"MASF_CACHE_DIR": str(Path(tmp) / "cache")}  # cold: no teacher markers, the user's cache untouched
        else:
            shutil.rmtree(cache_dir() / "teachers", ignore_errors=True)  # run 1: the driver builds the teacher
        runs = [one_run(args, Path(tmp), i, extra, env) for i in range(args.repeats)]
    lines = [
        "## Start-up: command to first trial",
        "",
        f"- command: `python -m bench.bench_startup --repeats {args.repeats}{' --smoke-test' if args.smoke_test else ''}` "
        f"(each run: `masf-bench run --categories {args.categories} --variants {args.variants} --preset {args.preset}"
        f"{''.join(f' --set {o}' for o in SMOKE_SET) if args.smoke_test else ''}`, a fresh process and a fresh local Ray)",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d')}",
        "",
        "Seconds from the process start to the end of each step (a run per row; run 1 creates the MLflow store and"
        " builds the teacher in the driver, the later runs find its marker; teachers and store_open run in a thread"
        " beside Ray's start; stderr lines: what reached the terminal's error stream).",
        "",
        "| run | " + " | ".join(PHASES) + " | stderr lines |",
        "|---|" + "---:|" * (len(PHASES) + 1),
    ]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | " + " | ".join(f"{r.get(p, float('nan')):.2f}" for p in PHASES) + f" | {r['stderr_lines']} |")
    med = {p: statistics.median(r[p] for r in runs if p in r) for p in PHASES}
    lines.append("| median | " + " | ".join(f"{med[p]:.2f}" for p in PHASES) + " | |")
    emit(lines, args.out)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps({"runs": runs, "median": med}, indent=1))


if __name__ == "__main__":
    main()
