"""Inference ms per image, side by side in one run: the `patchcore` baseline (PatchCore), MASF
`full` without TTSA and with TTSA (n views), on the same backbone and images.

Timing starts after a warm-up batch, covers `model.score` (teacher, SDM, student, bank
search, fusion, blur) on batches of --batch images already in memory, and reports the
median over --repeats passes. Weights of the student do not change its cost, so the
student is used as initialised; the banks are built from the category's training images.

    python -m bench.bench_inference [--data-root ROOT --category C] [--preset cpu] [--profile]
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
from bench.report import emit

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def load(args, variant: str):
    cfg = build_config(args.preset, [f"data.root={args.data_root}", f"data.category={args.category}",
                                     f"model.ttsa.views={args.views}"], variant=variant)
    teacher = cached_teacher(cfg.model.teacher)
    train, _, test = build_datasets(cfg, teacher.mean, teacher.std)
    torch.manual_seed(0)
    model = build_detector(cfg.model, teacher, seed=0).eval()
    x_train = torch.stack([train[i]["image"] for i in range(len(train))])
    model.fit(x_train.split(args.batch))
    x = torch.stack([test[i]["image"] for i in range(min(len(test), args.images))])
    return model, x


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--category", default="metal_plate")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="print where MASF's time goes")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = None
    if args.data_root is None:
        if (REAL / args.category).is_dir():
            args.data_root = REAL
        else:
            tmp = tempfile.TemporaryDirectory()
            args.data_root, args.category = Path(tmp.name), "bottle"
            generate_dataset(args.data_root, categories=["bottle"], size=256, n_train=20, n_test=32)
    base, x = load(args, "patchcore")
    masf, _ = load(args, "full")
    rows = {
        "patchcore": time_score(base, x, False, args.batch, args.repeats),
        "MASF full, no TTSA": time_score(masf, x, False, args.batch, args.repeats),
        f"MASF full, TTSA n={args.views}": time_score(masf, x, True, args.batch, args.repeats),
    }
    ref = rows["patchcore"]
    lines = [
        f"- command: `python -m bench.bench_inference --category {args.category} --preset {args.preset} --views {args.views} "
        f"--batch {args.batch} --images {args.images} --repeats {args.repeats} --threads {args.threads}`",
        f"- data: {args.category} ({args.data_root}), {len(x)} test images at {masf.cfg and x.shape[-1]} px; backbone "
        f"{masf.method.teacher.name} ({masf.method.teacher.weights_source})",
        f"- machine: {platform.machine()} CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d')}",
        "",
        "| model | ms / image | x baseline |",
        "|---|---:|---:|",
    ] + [f"| {k} | {v:.1f} | {v / ref:.2f} |" for k, v in rows.items()]
    lines += ["", f"Where MASF's time goes (one batch of {min(args.batch, len(x))}, no TTSA):", "",
              "| stage | ms / image |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in breakdown(masf, x[: args.batch], args.repeats)]
    emit(lines, args.out)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            masf.score(x[: args.batch], ttsa=False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
