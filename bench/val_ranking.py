"""How well does the validation split rank what it is used to choose? Against the test split.

Reads the finished trials of one or more sweep storage folders (``masf-runs/SWEEP``:
each trial's final checkpoint holds result.json and history.json) and reports

- epochs: for each trained trial, Spearman's rho between the validation composite
  and the test composite over its evaluated epochs, whether best_on_val picked the
  same epoch as best_on_test, and the test composite lost by choosing on validation;
- variants: for each (category, seed), Spearman's rho between the variants' final
  validation composites and their final test composites, and whether validation
  ranks the same variant first.

The composite is the paper's 0.5 image AUROC + 0.3 pixel AUROC + 0.2 PRO. With few
epochs or variants a rank correlation is coarse (4 points: rho in steps of 0.2);
the tables say how many points each rho has.

    python -m bench.val_ranking masf-runs/SWEEP [masf-runs/SWEEP2 ...] [--out ranking.md] [--smoke-test]

--smoke-test: the same reading (it is cheap); --out may not point into bench/results.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from bench import smoke
from bench.report import emit
from masf.runner.ray_tune import find_checkpoints


def load_trials(folders: list[Path]) -> list[dict]:
    trials = []
    for folder in folders:
        for key, (_, final, ckpt) in sorted(find_checkpoints(folder).items()):
            if final and (ckpt / "result.json").exists():
                trials.append({"key": key, "row": json.loads((ckpt / "result.json").read_text()),
                               "history": json.loads((ckpt / "history.json").read_text())})
    return trials


def _rho(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def epoch_table(trials: list[dict]) -> tuple[list[str], list[float]]:
    lines = ["| trial | epochs | rho(val, test) | best_on_val epoch | best_on_test epoch | test composite lost |",
             "|---|---:|---:|---:|---:|---:|"]
    rhos = []
    for t in trials:
        evaluated = [h for h in t["history"] if "val/composite" in h and "composite" in h]
        if len(evaluated) < 2:
            continue
        val, test = [h["val/composite"] for h in evaluated], [h["composite"] for h in evaluated]
        rho = _rho(val, test)
        rhos.append(rho)
        by_val = evaluated[int(np.argmax(val))]
        lost = max(test) - by_val["composite"]
        lines.append(f"| {t['key']} | {len(evaluated)} | {_fmt(rho)} | {by_val['epoch']} | "
                     f"{evaluated[int(np.argmax(test))]['epoch']} | {100 * lost:.2f} |")
    return lines, rhos


def variant_table(trials: list[dict]) -> tuple[list[str], list[float]]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for t in trials:
        r = t["row"]
        if "val/image_auroc" in r:
            groups.setdefault((r["category"], int(r["seed"])), []).append(r)
    comp = lambda r, p: 0.5 * r[f"{p}image_auroc"] + 0.3 * r[f"{p}pixel_auroc"] + 0.2 * r[f"{p}pro"]  # noqa: E731
    lines = ["| category | seed | variants | rho(val, test) | first on validation | first on test |",
             "|---|---:|---:|---:|---|---|"]
    rhos = []
    for (cat, seed), rows in sorted(groups.items()):
        if len(rows) < 2:
            continue
        val, test = [comp(r, "val/") for r in rows], [comp(r, "last/") for r in rows]
        rho = _rho(val, test)
        rhos.append(rho)
        lines.append(f"| {cat} | {seed} | {len(rows)} | {_fmt(rho)} | {rows[int(np.argmax(val))]['variant']} | "
                     f"{rows[int(np.argmax(test))]['variant']} |")
    return lines, rhos


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
    trials = load_trials(args.folders)
    ep, ep_rho = epoch_table(trials)
    va, va_rho = variant_table(trials)
    mean = lambda xs: _fmt(float(np.nanmean(xs))) if any(not math.isnan(x) for x in xs) else "n/a"  # noqa: E731
    lines = [f"Trials read: {len(trials)} from {', '.join(str(f) for f in args.folders)}.", "",
             f"Epochs (validation composite vs test composite over each trial's evaluated epochs; mean rho {mean(ep_rho)}):", "",
             *ep, "", f"Variants (final validation composite vs final test composite; mean rho {mean(va_rho)}):", "", *va]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
