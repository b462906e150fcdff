"""Trial-seconds of the paper's ablation grid with and without shared trainings and the feature cache.

The grid: one category, every registered variant (baselines included), several seeds. Two ways, in
one process, one after the other for each seed (the order alternates between seeds, so drift of a
shared machine falls on both):

- alone: every trial trains and scores alone, the teacher's features computed each time;
- shared: the trials of one training part (masf/trial/sharing.py) run as one group, every trial reads the
  teacher's features from one disk cache (as a sweep's trials do, STORAGE/feature-cache);
- and, with ``--ways``, the two parts apart: ``shared-nocache`` (groups, features computed each
  time) and ``alone-cache`` (every trial alone, reading the disk cache).

It checks that both ways give exactly the same metrics for every trial, and writes the seconds.

    python -m bench.bench_sharing --data-root DIR --category carpet --preset smoke --seeds 0,1,2 [--out FILE] [--smoke-test]

--smoke-test: variants full, no_ttsa, bank_only (one training group) and patchcore, seed 0, on a
small synthetic bottle with a random-init resnet18 at 32 px; prints the JSON (written only to --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch

from masf.config import build_config
from masf.method.feature_cache import FeatureCache
from masf.trial.sharing import plan_groups, training_fingerprint
from masf.trial.run import run_group, run_trial
from masf.config.variants import list_variants
from bench import smoke

SCORED = ("last/", "best_on_val/", "best_on_test/", "val/", "student_only/")


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(SCORED)}


def run_alone(trials: list, out: Path, cache: Optional[FeatureCache] = None) -> tuple[float, dict]:
    rows, start = {}, time.perf_counter()
    for t in trials:
        rows[t.key] = run_trial(t.cfg, out / t.key.replace("/", "__"), feature_cache=cache)
    return time.perf_counter() - start, rows


def run_shared(trials: list, out: Path, cache: Optional[FeatureCache]) -> tuple[float, dict]:
    by_key = {t.key: t for t in trials}
    groups = plan_groups(trials)
    grouped = {k for g in groups for k in g.members}
    rows, start = {}, time.perf_counter()
    for g in groups:
        rows.update(run_group(by_key[g.lead].cfg, [(k, by_key[k].cfg) for k in g.members], out / g.key.replace("/", "__"),
                              group=g.key, feature_cache=cache, lead_key=g.lead))
    for t in trials:
        if t.key not in grouped:
            rows[t.key] = run_trial(t.cfg, out / t.key.replace("/", "__"), feature_cache=cache)
    return time.perf_counter() - start, rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", help="an MVTec-layout folder (required, except with --smoke-test)")
    ap.add_argument("--category", default="carpet")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=None, help="comma-separated (default: every registered variant, baselines included)")
    ap.add_argument("--ways", default="alone,shared", help="of alone, shared, shared-nocache, alone-cache")
    ap.add_argument("--out", default=None, help="the JSON (default bench/results/sharing.json; with --smoke-test: printed only)")
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.overrides = [*smoke.TINY, *args.overrides]
        args.category, args.seeds, args.threads = "bottle", "0", 1
        args.variants = args.variants or "full,no_ttsa,bank_only,patchcore"
        with smoke.synthetic_data([args.category]) as root:
            args.data_root = str(root)
            measure(args)
        return
    if not args.data_root:
        ap.error("--data-root is required (or --smoke-test)")
    args.out = args.out or "bench/results/sharing.json"
    measure(args)


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",") if args.variants else list_variants()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="masf-sharing-"))
    ways = args.ways.split(",")
    caches = {"shared": FeatureCache(root=work / "feature-cache"), "alone-cache": FeatureCache(root=work / "feature-cache-alone")}
    per_seed, equal, total = [], True, dict.fromkeys(ways, 0.0)
    try:
        for i, seed in enumerate(seeds):
            trials = []
            for v in variants:
                cfg = build_config(args.preset, [*args.overrides, f"data.root={args.data_root}", f"data.category={args.category}",
                                                 f"train.seed={seed}", f"train.threads={args.threads}", "eval.figures=false"], variant=v)
                trials.append(SimpleNamespace(key=f"{args.category}/{v}/seed{seed}", category=args.category, variant=v, seed=seed,
                                              cfg=cfg, config=cfg.to_dict()))
            trained = [t for t in trials if t.cfg.model.method == "masf" and t.cfg.model.amfd.enabled]
            order = ways[i % len(ways):] + ways[: i % len(ways)]  # each way first once in len(ways) seeds
            seconds, rows = {}, {}
            for way in order:
                out = work / f"{way}-seed{seed}"
                run = run_shared if way.startswith("shared") else run_alone
                seconds[way], rows[way] = run(trials, out, caches.get(way))
                print(f"seed {seed} {way}: {seconds[way]:.1f} s", flush=True)
            same = all(_metrics(rows[ways[0]][k]) == _metrics(rows[w][k]) for k in rows[ways[0]] for w in ways)
            equal &= same
            per_seed.append({"seed": seed, "order": order, **{f"{w}_s": round(s, 1) for w, s in seconds.items()},
                             **{f"ratio_{w}": round(seconds[w] / seconds["alone"], 3) for w in ways if w != "alone"},
                             "metrics_equal": same,
                             "trainings_alone": len(trained), "trainings_shared": len({training_fingerprint(t.cfg) for t in trained})})
            for w in seconds:
                total[w] += seconds[w]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": "python -m bench.bench_sharing " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                               if k not in ("overrides", "smoke_test") and v is not None)
                   + "".join(f" --set {o}" for o in args.overrides if not (args.smoke_test and o in smoke.TINY))
                   + (" --smoke-test" if args.smoke_test else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
        "variants": variants, "seeds": seeds, "per_seed": per_seed,
        **{f"{w}_s": round(total[w], 1) for w in ways}, **{f"ratio_{w}": round(total[w] / total["alone"], 3) for w in ways if w != "alone"},
        "metrics_equal": equal, "cache": caches["shared"].stats(),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
