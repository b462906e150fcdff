"""One compact table of a sweep's results: every (category, variant) under every selection.

Rows are category x variant; for each selection (last, best_on_val, best_on_test) the
image AUROC, pixel AUROC and PRO as mean ± std over the finished seeds, in %, from the
same numbers the leaderboard shows (``masf.report.leaderboard.category_numbers``).

    python -m bench.selection_table --experiment EXP [--sweep all] [--tracking-uri URI] [--out table.md] [--smoke-test]

--smoke-test: the same reading (it is cheap); --out may not point into bench/results.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench import smoke
from bench.report import emit
from masf.report import leaderboard as lb
from masf.report.store import load_frame
from masf.runner.tracking import default_tracking_uri

METRICS = ("image_auroc", "pixel_auroc", "pro")


def cell(r, m: str) -> str:
    mean, std = r[f"{m}_mean"], r[f"{m}_std"]
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--sweep", default=None)
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
    df = load_frame(args.tracking_uri or default_tracking_uri(), args.experiment, args.sweep)
    head = "| category | variant | seeds |" + "".join(f" {s}: img / px / PRO |" for s in lb.SELECTIONS)
    lines = [f"Experiment {args.experiment}, sweeps {', '.join(df.attrs['sweeps'])}; values in %, mean ± std over seeds.", "",
             head, "|---|---|---:|" + "---:|" * len(lb.SELECTIONS)]
    for variant in lb.variants_in(df):
        per = {s: lb.category_numbers(df, variant, s) for s in lb.SELECTIONS}
        for cat in per["last"].index.drop("mean"):
            cells = [" / ".join(cell(per[s].loc[cat], m) for m in METRICS) for s in lb.SELECTIONS]
            lines.append(f"| {cat} | {variant} | {per['last'].loc[cat, 'seeds_finished']}/{per['last'].loc[cat, 'seeds_planned']} | " + " | ".join(cells) + " |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
