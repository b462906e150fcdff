"""Training throughput on CPU: images per second per epoch, and how an epoch and the bank build
(coreset selection included) scale with the number of training images.

Synthetic `bottle` images at the preset's resolution; one trial per image count, each a
couple of epochs of the real trainer, evaluation off the clock (a tiny test split).

    python -m bench.bench_train --counts 16,32,64,128 --preset cpu --epochs 2 [--out FILE] [--smoke-test]

--smoke-test: 4 and 8 images at 64 px, a random-init resnet18 at 32 px, one epoch; prints only.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

from masf.config import build_config
from masf.data.synth import generate_dataset
from masf.method.model import MASF
from masf.trial.trainer import Trainer
from masf.trial.run import build_datasets, cached_teacher
from bench import smoke
from bench.report import emit


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="16,32,64,128")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    overrides, size = [], 256
    if args.smoke_test:
        smoke.check_out(args.out)
        args.counts, args.epochs, args.threads, overrides, size = "4,8", 1, 1, list(smoke.TINY), 64
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # a trial holds data.val_fraction of the normals out (validation and calibration): generate enough
        # for the largest count to be trained on
        held_out = build_config(args.preset, overrides).data.val_fraction
        generate_dataset(Path(tmp), categories=["bottle"], seed=0, size=size, n_train=math.ceil(max(counts) / (1 - held_out)) + 1,
                         n_test=4)
        for n in counts:
            cfg = build_config(args.preset, [*overrides, f"data.root={tmp}", "data.category=bottle", f"data.max_train_images={n}",
                                             f"train.epochs={args.epochs}", f"eval.every={args.epochs + 1}", "eval.figures=false",
                                             "model.ttsa.enabled=false"])
            teacher = cached_teacher(cfg.model.teacher)
            train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
            n = len(train)  # the images actually trained on
            for i in range(len(train)):  # decode once, as every epoch after the first would
                train[i]
            torch.manual_seed(0)
            trainer = Trainer(cfg, MASF(cfg.model, teacher, seed=0), train, test, Path(tmp) / f"run{n}", val_set=val,
                              calibration_set=val.calibration if val is not None else None)
            epoch_s = []
            for _ in range(args.epochs):
                t0 = time.perf_counter()
                trainer.train_epoch()
                trainer.epoch += 1
                epoch_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            trainer.build_banks()
            bank_s = time.perf_counter() - t0
            best = min(epoch_s)
            rows.append((n, best, n / best, bank_s, trainer.bank_stats))
            print(f"{n} images: epoch {best:.1f} s ({n / best:.1f} img/s), bank build {bank_s:.1f} s {trainer.bank_stats}", flush=True)
    lines = [
        f"- command: `python -m bench.bench_train --counts {args.counts} --preset {args.preset} --epochs {args.epochs} --threads {args.threads}"
        f"{' --smoke-test' if args.smoke_test else ''}`",
        f"- machine: {platform.machine()} CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}; date {time.strftime('%Y-%m-%d')}",
        "",
        "| train images | epoch (s, best of runs) | images / s | bank build incl. coreset (s) | patches at scale 0 | prototypes per scale |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for n, best, ips, bank_s, stats in rows:
        protos = ", ".join(str(v) for k, v in sorted(stats.items()) if k.endswith("_prototypes"))
        lines.append(f"| {n} | {best:.1f} | {ips:.1f} | {bank_s:.1f} | {stats.get('bank/scale0_patches', 0):,} | {protos} |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
