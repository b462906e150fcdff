"""Inference ms per image, side by side in one run: the `patchcore` baseline (PatchCore), MASF's banks alone
(`bank_only`) and MASF `full`, each without TTSA and with TTSA (n views), `full` also with its attention in
bfloat16 (``model.amfd.attention_dtype``), on the same backbone and images.

Timing starts after a warm-up batch, covers `model.score` (teacher, SDM, student, bank
search, fusion, blur) on batches of --batch images already in memory, and reports the
median over --repeats passes. Weights of the student do not change its cost, so the
student is used as initialised; the banks are built from the category's training images and the
scoring calibrated on its calibration normals, as a trial's Trainer does.

    python -m bench.bench_inference [--data-root ROOT --category C] [--preset cpu] [--set a.b=c] [--profile] [--out FILE] [--smoke-test]

--smoke-test: a random-init resnet18 at 32 px on a small synthetic bottle, 8 images, 1 repeat; prints only.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from masf.config import build_config
from masf.data.synth import generate_dataset
from masf.method.model import MASF, build_detector
from masf.trial.run import build_datasets, cached_teacher
from masf.trial.trainer import Trainer
from bench import smoke
from bench.report import emit

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def load(args, variant: str):
    cfg = build_config(args.preset, [*args.overrides, f"data.root={args.data_root}", f"data.category={args.category}",
                                     f"model.ttsa.views={args.views}"], variant=variant)
    teacher = cached_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    torch.manual_seed(0)
    model = build_detector(cfg.model, teacher, seed=0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        # what a trial does before it scores: the banks on the training normals, then (MASF) the BatchNorm
        # recalibration and the quantile calibration on the calibration normals (masf/trial/run.py)
        trainer = Trainer(cfg, model, train, test, Path(tmp), val_set=val,
                          calibration_set=val.calibration if val is not None else None)
        trainer.build_banks()
        trainer.prepare_scoring()
    x = torch.stack([test[i]["image"] for i in range(min(len(test), args.images))])
    return model.eval(), x


def time_score(model: MASF, x: torch.Tensor, ttsa: bool, batch: int, repeats: int) -> float:
    with torch.no_grad():
        model.score(x[:batch], ttsa=ttsa)  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(0, len(x), batch):
                model.score(x[i : i + batch], ttsa=ttsa)
            runs.append(1000 * (time.perf_counter() - t0) / len(x))
    return statistics.median(runs)


def _ms(fn, images: int, repeats: int):
    """(ms per image of fn(), its last output), warm-up excluded."""
    out = fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return 1000 * (time.perf_counter() - t0) / repeats / images, out


@torch.no_grad()
def breakdown(model: MASF, x: torch.Tensor, repeats: int) -> list[tuple[str, float]]:
    """ms per image of each stage of ``model.score`` without TTSA, on one batch."""
    n = len(x)
    rows = []
    ms, feats = _ms(lambda: model.teacher(x), n, repeats)
    rows.append(("teacher", ms))
    for i, f in enumerate(feats):
        shape = f"{f.shape[1]} ch, {f.shape[2]}x{f.shape[3]}"
        ms, spec = _ms(lambda: model.sdm[i](f), n, repeats)
        rows.append((f"scale {i} ({shape}): SDM", ms))
        student = model.students[i]
        ms, q = _ms(lambda: student.ssca(spec, spec), n, repeats)
        rows.append((f"scale {i}: SSCA attention ({f.shape[2] * f.shape[3]} tokens, d={student.ssca.dim})", ms))
        ms, _ = _ms(lambda: student.head(student.blocks(q)), n, repeats)
        rows.append((f"scale {i}: residual blocks + head", ms))
        ms, _ = _ms(lambda: model.banks[i].score(f), n, repeats)
        rows.append((f"scale {i}: bank (embed + FAISS k={model.banks[i].bank.k})", ms))
    total, _ = _ms(lambda: model.score(x, ttsa=False), n, repeats)
    rows.append(("rest (upsampling, fusion, blur)", total - sum(ms for _, ms in rows)))
    rows.append(("**score(), no TTSA**", total))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--category", default="metal_plate")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override a.b=c (repeatable)")
    ap.add_argument("--profile", action="store_true", help="print where MASF's time goes")
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.overrides = [*smoke.TINY, *args.overrides]
        args.views, args.batch, args.images, args.repeats, args.threads = 2, 4, 8, 1, 1
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        if args.data_root is None:
            if (REAL / args.category).is_dir() and not args.smoke_test:
                args.data_root = REAL
            else:
                args.data_root, args.category = Path(tmp), "bottle"
                size, n_train, n_test = (64, 8, 8) if args.smoke_test else (256, 20, 32)
                generate_dataset(args.data_root, categories=["bottle"], seed=0, size=size, n_train=n_train, n_test=n_test)
        measure(args)


def measure(args: argparse.Namespace) -> None:
    base, x = load(args, "patchcore")
    masf, _ = load(args, "full")
    banks, _ = load(args, "bank_only")
    with_bf16 = argparse.Namespace(**{**vars(args), "overrides": [*args.overrides, "model.amfd.attention_dtype=bfloat16"]})
    lowered, _ = load(with_bf16, "full")
    views = f"TTSA n={args.views}"
    rows = {
        "patchcore": time_score(base, x, False, args.batch, args.repeats),
        "bank_only, no TTSA": time_score(banks, x, False, args.batch, args.repeats),
        f"bank_only, {views}": time_score(banks, x, True, args.batch, args.repeats),
        "MASF full, no TTSA": time_score(masf, x, False, args.batch, args.repeats),
        f"MASF full, {views}": time_score(masf, x, True, args.batch, args.repeats),
        "MASF full, no TTSA, bfloat16 attention": time_score(lowered, x, False, args.batch, args.repeats),
        f"MASF full, {views}, bfloat16 attention": time_score(lowered, x, True, args.batch, args.repeats),
    }
    ref = rows["patchcore"]
    same = lambda k: rows[f"bank_only, {views}" if "TTSA n=" in k else "bank_only, no TTSA"]  # noqa: E731
    lines = [
        f"- command: `python -m bench.bench_inference --category {args.category} --preset {args.preset} --views {args.views} "
        f"--batch {args.batch} --images {args.images} --repeats {args.repeats} --threads {args.threads}"
        + "".join(f" --set {o}" for o in args.overrides if o not in smoke.TINY) + (" --smoke-test" if args.smoke_test else "") + "`",
        f"- data: {args.category} ({args.data_root}), {len(x)} test images at {x.shape[-1]} px; backbone "
        f"{masf.teacher.name} ({masf.teacher.weights_source})",
        f"- machine: {platform.machine()} CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d')}",
        "",
        "| model | ms / image | x patchcore | x bank_only (same TTSA) |",
        "|---|---:|---:|---:|",
    ] + [f"| {k} | {v:.1f} | {v / ref:.2f} | {v / same(k):.2f} |" for k, v in rows.items()]
    lines += ["", f"Where MASF's time goes (one batch of {min(args.batch, len(x))}, no TTSA):", "",
              "| stage | ms / image |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in breakdown(masf, x[: args.batch], args.repeats)]
    emit(lines, args.out)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            masf.score(x[: args.batch], ttsa=False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
