"""Choose MASF's reading on development data only: validation splits and synthetic categories.

For each training configuration (a cumulative ladder from the spec's reading to
the masked-reconstruction reading), train on each synthetic development
category, and after every epoch score the validation split (held-out normals
plus pseudo-anomalies) and the synthetic category's test split under every
scoring option (test-time masks, BatchNorm recalibration, quantile
normalisation; TTSA readings on the last epoch). No real category's test split
is read. The selection criterion is fixed before the run: the mean over the
development categories of the composite (0.5 image AUROC + 0.3 pixel AUROC +
0.2 PRO) of validation and synthetic test, fused score, at the last epoch.

    masf-bench data synth --out /tmp/dev256 --size 256 ...  # the development data (see RESULTS.md)
    python -m bench.select_reading --data-root /tmp/dev256 --categories carpet bottle \\
        --out bench/results/select_reading.json [--smoke-test]

Writes one JSON record per (training config, category, epoch, scoring option)
as it goes; ``--table`` prints the tables of a finished (or partial) run:

    python -m bench.select_reading --table --out bench/results/select_reading.json

``--smoke-test``: the first two rungs on a small synthetic bottle (generated into a temporary
folder), a random-init resnet18 at 32 px, one epoch of two steps, every scoring option of the
last epoch; the records go to a temporary file (or --out) and the tables are printed.

The criterion is computed over the categories that every compared option has.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from masf.config import build_config
from masf.trial.evaluation import composite
from masf.method.model import build_detector
from masf.trial.trainer import Trainer
from masf.trial.run import build_datasets, cached_teacher

# training-shaping options, cumulative: each rung adds one reading to the one before
LADDER = [
    ("spec", {}),
    ("+masked recon", {"model.amfd.loss_region": "masked", "model.amfd.attention_mask": True, "model.amfd.pos_encoding": "sincos"}),
    ("+relative amplitude", {"model.amfd.amplitude_error": "relative"}),
]
# UGHF's closed-form log-variances are scored as fusion weights on the last rung's models ("closed-form
# weights"), see below
# scoring-only options, evaluated on every trained model without retraining
SCORING = {
    "unmasked": {"model.amfd.test_masking": False},
    "unmasked+bn": {"model.amfd.test_masking": False, "model.amfd.bn_recalibration": True},
    "complementary": {"model.amfd.test_masking": True, "model.amfd.test_mask_mode": "complementary"},
    "complementary+bn": {"model.amfd.test_masking": True, "model.amfd.test_mask_mode": "complementary", "model.amfd.bn_recalibration": True},
}
NORMALIZE = ["none", "quantile"]
TTSA = {
    "no ttsa": None,
    "hermitian": {"model.ttsa.noise": "hermitian", "model.ttsa.include_clean": False},
    "hermitian+clean": {"model.ttsa.noise": "hermitian", "model.ttsa.include_clean": True},
    "literal": {"model.ttsa.noise": "literal", "model.ttsa.include_clean": False},
}


def apply(model_cfg, switches: dict) -> None:
    for dotted, value in switches.items():
        node = model_cfg
        parts = dotted.split(".")[1:]  # below "model."
        for p in parts[:-1]:
            node = getattr(node, p)
        setattr(node, parts[-1], value)


def scored(trainer: Trainer, loader, ttsa: bool) -> dict:
    """Fused metrics (with or without TTSA) and, without TTSA, the student-only metrics (they never use TTSA)."""
    fused = trainer.evaluate(ttsa=ttsa, loader=loader)
    w = trainer.cfg.eval.composite_weights
    out = {"composite": composite(fused.metrics, w), **fused.metrics}
    if not ttsa:
        alone = trainer.evaluate(loader=loader, student_only=True)
        out.update({f"student_only/{k}": v for k, v in alone.metrics.items()})
    return out


def _mean(rows: list[dict], split: str, key: str) -> float:
    vals = [r[split][key] for r in rows if split in r and key in r[split]]
    return float(np.mean(vals)) if vals else float("nan")


def tables(records: list[dict]) -> str:
    """Markdown tables: the ladder per epoch (each rung's own scoring), every scoring option at the last
    epoch, and the criterion's ranking of all of them."""
    cats = sorted(set.intersection(*({r["category"] for r in records if r["rung"] == rung} for rung, _ in LADDER
                                     if any(r["rung"] == rung for r in records))))
    rows = [r for r in records if r["category"] in cats]
    out = [f"Development categories compared: {', '.join(cats)} (synthetic, 256 px); values are means over them.", ""]
    f = lambda v: "—" if v != v else f"{v:.3f}"  # noqa: E731
    out += ["| rung | scoring | normalize | TTSA | epoch | steps | val composite | synth composite | val student-only img AUROC "
            "| synth student-only img AUROC | val img AUROC | synth img AUROC |", "|" + "---|" * 12]
    keys = sorted({(r["rung"], r["scoring"], r["normalize"], r["ttsa"], r["epoch"], r["steps"]) for r in rows},
                  key=lambda k: ([n for n, _ in LADDER].index(k[0]), k[4], k[1], k[2], k[3]))
    ranked = []
    for key in keys:
        g = [r for r in rows if (r["rung"], r["scoring"], r["normalize"], r["ttsa"], r["epoch"], r["steps"]) == key]
        if len({r["category"] for r in g}) < len(cats):
            continue
        vc, sc = _mean(g, "val", "composite"), _mean(g, "synth_test", "composite")
        out.append(f"| {' | '.join(map(str, key))} | {f(vc)} | {f(sc)} | {f(_mean(g, 'val', 'student_only/image_auroc'))} | "
                   f"{f(_mean(g, 'synth_test', 'student_only/image_auroc'))} | {f(_mean(g, 'val', 'image_auroc'))} | "
                   f"{f(_mean(g, 'synth_test', 'image_auroc'))} |")
        if sc == sc:
            ranked.append(((vc + sc) / 2, key))
    out += ["", "Criterion (mean of validation and synthetic-test composite, last epoch), best first:", ""]
    out += [f"{i + 1}. {c:.4f}  {' / '.join(map(str, k[:4]))}" for i, (c, k) in enumerate(sorted(ranked, reverse=True))]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root")
    ap.add_argument("--categories", nargs="+", default=["carpet", "bottle"])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps-per-epoch", type=int, default=30)
    ap.add_argument("--rungs", type=int, default=len(LADDER))
    ap.add_argument("--val-fraction", type=float, default=0.4, help="data.val_fraction of the development runs")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="the records (JSON); default bench/results/select_reading.json")
    ap.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    ap.add_argument("--smoke-test", action="store_true",
                    help="a cheap run of the same code (two rungs, tiny sizes, seconds); writes nothing into bench/results")
    args = ap.parse_args(argv)
    if args.smoke_test and not args.table:
        from bench import smoke
        from masf.config import parse_override

        smoke.check_out(args.out)
        with contextlib.ExitStack() as stack:
            args.data_root = str(stack.enter_context(smoke.synthetic_data(["bottle"], size=64, n_train=10, n_test=8)))
            if args.out is None:
                args.out = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="select-reading-"))) / "select_reading.json")
            args.categories, args.epochs, args.steps_per_epoch, args.rungs, args.threads = ["bottle"], 1, 2, 2, 1
            run(args, dict(parse_override(o) for o in smoke.TINY))
            print(tables(json.loads(Path(args.out).read_text())))
        return
    args.out = args.out or "bench/results/select_reading.json"
    if args.table:
        print(tables(json.loads(Path(args.out).read_text())))
        return
    run(args)


def run(args: argparse.Namespace, base: Optional[dict] = None) -> None:
    """Train and score every (rung, category) not done yet in args.out; ``base``: overrides under the script's own."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(out.read_text()) if out.exists() else []
    # a (rung, category) counts as done when its last epoch was scored; partial ones are run again
    last_epoch = {(r["rung"], r["category"]) for r in records if "synth_test" in r}
    records = [r for r in records if (r["rung"], r["category"]) in last_epoch]
    done = last_epoch
    torch.set_num_threads(args.threads)
    switches: dict = {"model.reading": "spec"}
    for rung, (name, extra) in enumerate(LADDER[: args.rungs]):
        switches = {**switches, **extra}
        for category in args.categories:
            if (name, category) in done:
                continue
            cfg = build_config(args.preset, {**(base or {}), **switches, "data.root": args.data_root, "data.category": category,
                                             "train.epochs": args.epochs, "train.steps_per_epoch": args.steps_per_epoch,
                                             "train.warmup_epochs": 1, "train.restart_epochs": args.epochs,
                                             "data.val_fraction": args.val_fraction})
            teacher = cached_teacher(cfg.model.teacher)
            train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
            torch.manual_seed(cfg.train.seed)
            model = build_detector(cfg.model, teacher, seed=cfg.train.seed)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(cfg, model, train, test, Path(tmp), val_set=val, calibration_set=val.calibration)
                base_model = copy.deepcopy(cfg.model)
                for epoch in range(1, args.epochs + 1):
                    t0 = time.perf_counter()
                    rec = trainer.train_epoch()
                    trainer.epoch = epoch
                    trainer.build_banks()
                    train_s = time.perf_counter() - t0
                    saved = copy.deepcopy(model.state_dict())
                    last = epoch == args.epochs
                    natural = ("unmasked", "none") if rung == 0 else ("complementary+bn", "quantile")
                    options = [(sn, nm, "no ttsa") for sn in SCORING for nm in NORMALIZE
                               if (sn, nm) == natural or (last and nm == "quantile") or (last and (sn, nm) == ("unmasked", "none"))]
                    if last and rung == args.rungs - 1:
                        options += [(natural[0], natural[1], t) for t in TTSA if TTSA[t] is not None]
                    if last and rung > 0:
                        options.append((natural[0], natural[1], "closed-form weights"))
                    epoch_losses = torch.tensor([rec[f"loss/scale{i}"] for i in range(model.scales)])
                    for sname, norm, tname in options:
                        sswitch, tswitch = SCORING[sname], TTSA.get(tname)
                        model.cfg = copy.deepcopy(base_model)
                        apply(model.cfg, {**sswitch, "model.ughf.normalize": norm, **(tswitch or {})})
                        if tname == "closed-form weights":
                            # the closed form's fusion weights, v_l = log L_l (the epoch's mean loss per scale). Under
                            # Adam the per-scale loss weights barely change training (each scale's student has its own
                            # parameters, and Adam is invariant to a constant factor of a parameter's gradient), so
                            # the closed form acts through the fusion weights: scored here without retraining
                            with torch.no_grad():
                                model.ughf.log_vars.copy_(epoch_losses.log())
                        trainer.cfg.model = model.cfg
                        t1 = time.perf_counter()
                        trainer.prepare_scoring()
                        r = {"rung": name, "category": category, "epoch": epoch, "steps": epoch * args.steps_per_epoch,
                             "scoring": sname, "normalize": norm, "ttsa": tname, "loss": rec["loss"],
                             "loss_terms": {k: v for k, v in rec.items() if k.startswith("loss/")},
                             "fusion_weights": model.fusion_weights(), "train_seconds": train_s,
                             "val": scored(trainer, trainer.val_loader, tswitch is not None)}
                        if last:
                            r["synth_test"] = scored(trainer, trainer.test_loader, tswitch is not None)
                        r["score_seconds"] = time.perf_counter() - t1
                        model.load_state_dict(saved)
                        records.append(r)
                        print(json.dumps({k: r[k] for k in ("rung", "category", "epoch", "scoring", "normalize", "ttsa")}),
                              "val", round(r["val"]["composite"], 3), "synth", round(r.get("synth_test", {}).get("composite", float("nan")), 3),
                              "student val img", round(r["val"].get("student_only/image_auroc", float("nan")), 3), f"{r['score_seconds']:.0f}s", flush=True)
                        out.write_text(json.dumps(records, indent=1))
                    model.cfg = copy.deepcopy(base_model)
                    trainer.cfg.model = model.cfg


if __name__ == "__main__":
    main()
