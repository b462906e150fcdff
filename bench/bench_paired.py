"""Paired intervals of a finished sweep, both ways: the t interval over its seeds, and each seed's paired
bootstrap over test images alone, with the bootstrap's time (it runs inside ``masf-bench leaderboard``).

    python -m bench.bench_paired --tracking-uri sqlite:///mlflow.db --experiment real-cpu-paired \
        --out bench/results/paired.md --json bench/results/paired.json [--smoke-test]

--smoke-test: the same reading (it is cheap: the bootstraps of one sweep take seconds); prints only,
--out and --json may not point into bench/results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import smoke
from bench.report import emit
from masf.report import leaderboard as lb
from masf.report.store import MlflowRecords, load_frame


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--sweep", default=None)
    ap.add_argument("--selection", default="last")
    ap.add_argument("--reference", default="full")
    ap.add_argument("--metrics", default="image_auroc,pixel_auroc,pro,mad")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out, args.json)
    metrics = lb.pick_metrics(args.metrics)
    df = load_frame(args.tracking_uri, args.experiment, args.sweep)
    records = MlflowRecords(args.tracking_uri)
    start = time.perf_counter()
    for rid in df.run_id:  # fetched once, before anything is timed
        records(rid, args.selection)
    fetch_s = time.perf_counter() - start
    seeds = sorted(df[df.status.eq("finished")].seed.unique())
    # how far the records' binned pixel metrics are from the exact logged ones, over every finished trial
    from masf.records import metrics_from_statistics

    worst: dict[str, float] = {}
    for row in df[df.status.eq("finished")].to_dict("records"):
        rec = records(row["run_id"], args.selection)
        if rec is None:
            continue
        again = metrics_from_statistics(rec)
        for m in lb.METRICS:  # those a record recomputes (not the F1s at thresholds fixed on validation)
            if m in again and f"{args.selection}/{m}" in row and row[f"{args.selection}/{m}"] == row[f"{args.selection}/{m}"]:
                worst[m] = max(worst.get(m, 0.0), abs(float(again[m][0]) - float(row[f"{args.selection}/{m}"])))
    rows, out = [], {"fetch_seconds": round(fetch_s, 3), "variants": {}, "record_vs_exact_max_abs": worst}
    for v in lb.variants_in(df):
        if v == args.reference:
            continue
        pairs = lb._pairs(df, v, args.reference, args.selection)
        t = lb.paired_interval(pairs, args.selection, metrics, records)
        entry = {"t": {m: t["ci"].get(m) for m in metrics}, "t_method": t["method"], "bootstrap": {}, "bootstrap_seconds": {}}
        for s in seeds:
            one = pairs[pairs.seed == s]
            t0 = time.perf_counter()
            b = lb.paired_interval(one, args.selection, metrics, records)
            entry["bootstrap_seconds"][int(s)] = round(time.perf_counter() - t0, 3)
            entry["bootstrap"][int(s)] = {m: b["ci"].get(m) for m in metrics}
            entry.setdefault("bootstrap_method", b["method"])
        out["variants"][v] = entry
        for m in metrics:
            d, lo, hi = entry["t"][m] or (float("nan"),) * 3
            boot = "; ".join(f"seed {s}: {lb._delta_cell(*entry['bootstrap'][s][m])}" for s in entry["bootstrap"] if entry["bootstrap"][s][m])
            rows.append(f"| {v} | {lb.METRICS[m]} | {lb._delta_cell(d, lo, hi)} | {boot} |")
    lines = [f"Paired differences vs {args.reference} ({args.selection}), percentage points; * = the interval excludes 0.",
             f"t: over seeds {', '.join(map(str, seeds))}; bootstrap: each seed alone, over its test images (stratified, 2000 draws).",
             "", "| variant | metric | t over seeds | bootstrap per seed |", "|---|---|---|---|", *rows, "",
             "records against the exact logged metrics (largest |difference|, in points): "
             + ", ".join(f"{lb.METRICS[m]} {100 * d:.3f}" for m, d in worst.items()), "",
             f"records fetched from MLflow in {fetch_s:.2f} s; one bootstrap (all metrics of one variant, one seed): "
             + ", ".join(f"{v} {max(e['bootstrap_seconds'].values()):.2f} s" for v, e in out["variants"].items() if e["bootstrap_seconds"])]
    emit(lines, args.out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
