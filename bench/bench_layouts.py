"""Real photographs read in every published layout: data check, and one trial per layout, against the MVTec AD layout.

    python -m bench.bench_layouts [--data-root ../shared/data/real] [--category metal_plate]
                                  [--variant patchcore] [--preset cpu] [--out bench/results/layouts.json] [--smoke-test]

The category (real images, in the MVTec AD layout) is written in every layout masf-bench reads
(masf.data.synth_layouts.write_layout: the same files; where a layout publishes validation normals,
they are the images ``data.val_fraction`` 0.2 with ``data.seed`` 0 carves out of train). For each
layout: the layout recognised from the folder, ``masf-bench data check``'s deep pass (seconds, images,
problems) and one trial of the variant; then the largest difference of any test metric of the trial
(``last/*``, ``val/*``; the per-defect-type ones aside, their types are named otherwise in some layouts)
from the MVTec AD layout's trial. Metrics identical up to float summation order are the claim checked.

--smoke-test: a synthetic category at 32 px, the tiny random-init teacher, one epoch; writes nothing
into bench/results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench import smoke

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def compared_keys(row: dict) -> list[str]:
    """The trial's metrics every layout must reproduce: last/* and val/*, per defect type aside."""
    return sorted(k for k, v in row.items() if k.startswith(("last/", "val/")) and "/defect/" not in k
                  and isinstance(v, float) and v == v)


def one_layout(src: Path, dst: Path, layout: str, category: str, preset: str, overrides: list[str], variant: str) -> dict:
    from masf.config import build_config
    from masf.data.layouts import resolve_layout
    from masf.data.synth_layouts import write_layout
    from masf.data.validate import validate_dataset
    from masf.trial import run_trial

    root = src
    if layout != "mvtec_ad":
        root = dst / layout
        write_layout(src, root, layout)
    found, how = resolve_layout(root)
    t = time.perf_counter()
    report = validate_dataset(root, category)
    check_s = time.perf_counter() - t
    cfg = build_config(preset, [*overrides, f"data.root={root}", f"data.category={category}"], variant=variant)
    t = time.perf_counter()
    row = run_trial(cfg, dst / f"trial-{layout}")
    return {"layout": layout, "recognised": found.name, "how": how, "check_seconds": round(check_s, 2),
            "images": report.n_images, "errors": len(report.errors), "warnings": len(report.warnings),
            "trial_seconds": round(time.perf_counter() - t, 1), "val_source": row["val_source"],
            "train_images": row["train_images"], "val_images": row["val_images"], "test_images": row["test_images"],
            "metrics": {k: row[k] for k in compared_keys(row)}}


def main(argv: list[str] | None = None) -> None:
    from masf.data.synth_layouts import WRITTEN_LAYOUTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--category", default="metal_plate")
    ap.add_argument("--variant", default="patchcore")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    overrides: list[str] = []
    layouts = ["mvtec_ad", *sorted(set(WRITTEN_LAYOUTS) - {"mvtec_ad", "mpdd"})]  # mpdd is the MVTec AD layout
    if not args.smoke_test and not (args.data_root / args.category).is_dir():
        raise SystemExit(f"--data-root {args.data_root}: no category {args.category} there")
    source = smoke.synthetic_data(("carpet",), size=32, n_train=10, n_test=8) if args.smoke_test else contextlib.nullcontext(args.data_root)
    with tempfile.TemporaryDirectory(prefix="masf-layouts-") as tmp:
        with source as src:
            if args.smoke_test:
                smoke.check_out(args.out)
                args.category, args.preset, overrides = "carpet", "smoke", list(smoke.TINY)
            results = [one_layout(src, Path(tmp), name, args.category, args.preset, overrides, args.variant) for name in layouts]
    ref = results[0]["metrics"]
    print(f"{args.category} / {args.variant} / preset {args.preset}: {len(ref)} metrics compared with the MVTec AD layout's trial")
    print(f"{'layout':<11} {'recognised':<11} {'images':>6} {'check s':>7} {'errors':>6} {'val':<9} {'train/val/test':>14} "
          f"{'trial s':>7} {'max |diff|':>10}")
    for r in results:
        r["max_abs_difference"] = max((abs(r["metrics"][k] - v) for k, v in ref.items() if k in r["metrics"]), default=float("nan"))
        r["missing_metrics"] = sorted(set(ref) - set(r["metrics"]))
        counts = f"{r['train_images']}/{r['val_images']}/{r['test_images']}"
        print(f"{r['layout']:<11} {r['recognised']:<11} {r['images']:>6} {r['check_seconds']:>7.2f} {r['errors']:>6} "
              f"{r['val_source']:<9} {counts:>14} {r['trial_seconds']:>7.1f} {r['max_abs_difference']:>10.1e}"
              + (f"  missing: {', '.join(r['missing_metrics'])}" if r["missing_metrics"] else ""))
    print(f"python {platform.python_version()}, {platform.machine()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": "python -m bench.bench_layouts " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "date": time.strftime("%Y-%m-%d"), "category": args.category, "variant": args.variant,
                   "preset": args.preset, "results": results}
        args.out.write_text(json.dumps(payload, indent=1))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
