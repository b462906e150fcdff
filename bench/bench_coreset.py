"""Coreset selection: time and coverage radius of masf's pruned greedy k-center against a
straightforward greedy and plain random sampling, on real patch features.

Patches are PatchCore-style: EfficientNet-Lite0 (packaged ImageNet weights) layers at
stride 8 and 16, 3x3 averaged, the stride-16 map upsampled to stride 8, concatenated
(40 + 112 = 152 dims) and projected to 128 dims by a seeded Gaussian projection, as the
selection itself works on. Images: the synthetic `bottle` category at 256 px, as many
as the patch count needs (1,024 patches per image), so 209 images give 214,016 patches,
the count of the peer measurement quoted in bench/RESULTS.md.

    python -m bench.bench_coreset --sizes 10000,50000,214016 --ratio 0.1 [--plain-steps 300] [--out FILE] [--smoke-test]

The straightforward greedy runs in full up to --plain-full patches; above that it runs
--plain-steps steps and its total is extrapolated from the measured per-step time (the
per-step cost of plain greedy does not change with the step).

--smoke-test: 1,024 and 2,048 patches (two images), plain greedy in full on the first and
extrapolated from 20 steps on the second, one thread; prints only.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from masf.config import TeacherConfig
from masf.data.mvtec import MVTecDataset
from masf.data.synth import generate_dataset
from masf.method.coreset import coverage_radius, greedy_coreset, random_projection
from masf.method.teacher import build_teacher
from bench import smoke
from bench.report import emit


def patch_features(n_patches: int, batch: int = 16) -> np.ndarray:
    n_images = -(-n_patches // 1024)
    teacher = build_teacher(TeacherConfig(name="tf_efficientnet_lite0", out_indices=[2, 3], weights="packaged"))
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(Path(tmp), categories=["bottle"], seed=0, size=256, n_train=n_images, n_test=2)
        ds = MVTecDataset(tmp, "bottle", "train", image_size=256, mean=teacher.mean, std=teacher.std, cache=False)
        feats = []
        with torch.no_grad():
            for i in range(0, len(ds), batch):
                x = torch.stack([ds[j]["image"] for j in range(i, min(i + batch, len(ds)))])
                f2, f3 = teacher(x)
                f2 = F.avg_pool2d(f2, 3, 1, 1)
                f3 = F.interpolate(F.avg_pool2d(f3, 3, 1, 1), size=f2.shape[-2:], mode="bilinear", align_corners=False)
                feats.append(torch.cat([f2, f3], 1).permute(0, 2, 3, 1).reshape(-1, f2.shape[1] + f3.shape[1]).numpy())
    x = np.concatenate(feats)[:n_patches]
    return random_projection(x, 128, seed=0)


def plain_greedy(x: np.ndarray, n_select: int, seed: int = 0, max_steps: int | None = None) -> tuple[np.ndarray, float]:
    """Textbook greedy k-center: after each pick, recompute every point's distance to it. Returns (indices, s/step)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    first = int(np.random.default_rng(seed).integers(len(x)))
    sel = [first]
    mind = np.sqrt(np.maximum(sq + sq[first] - 2 * x @ x[first], 0))
    steps = n_select if max_steps is None else min(n_select, max_steps)
    t0 = time.perf_counter()
    for _ in range(1, steps):
        new = int(np.argmax(mind))
        sel.append(new)
        mind = np.minimum(mind, np.sqrt(np.maximum(sq + sq[new] - 2 * x @ x[new], 0)))
        mind[new] = 0
    per_step = (time.perf_counter() - t0) / max(1, steps - 1)
    return np.array(sel), per_step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,214016")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--plain-full", type=int, default=50000, help="run plain greedy in full up to this many patches")
    ap.add_argument("--plain-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.sizes, args.plain_full, args.plain_steps, args.threads = "1024,2048", 1024, 20, 1
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    pool = patch_features(max(sizes))
    print(f"features: {pool.shape} in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for n in sizes:
        x = pool[:n]
        k = int(np.ceil(args.ratio * n))
        t = time.perf_counter()
        ours = greedy_coreset(x, k, seed=0)
        t_ours = time.perf_counter() - t
        r_ours = coverage_radius(x, x[ours])
        full = n <= args.plain_full
        plain, per_step = plain_greedy(x, k, seed=0, max_steps=None if full else args.plain_steps)
        t_plain = per_step * (k - 1)
        same = float(np.mean(plain == ours[: len(plain)]))
        r_plain = coverage_radius(x, x[plain]) if full else float("nan")
        rng = np.random.default_rng(0)
        r_rand = coverage_radius(x, x[rng.choice(n, k, replace=False)])
        rows.append((n, k, t_ours, t_plain, "measured" if full else f"extrapolated from {len(plain)} steps",
                     t_ours / (k - 1) * 1000, per_step * 1000, same, r_ours, r_plain, r_rand))
        print(f"n={n} k={k}: ours {t_ours:.1f} s, plain {t_plain:.1f} s ({rows[-1][4]}), same picks {same:.4f}, "
              f"radius ours {r_ours:.4f} plain {r_plain:.4f} random {r_rand:.4f}", flush=True)
    lines = [
        f"- command: `python -m bench.bench_coreset --sizes {args.sizes} --ratio {args.ratio} --plain-full {args.plain_full} --plain-steps {args.plain_steps}"
        f"{' --smoke-test' if args.smoke_test else ''}`",
        f"- machine: {platform.machine()}, {torch.get_num_threads()} torch threads, numpy {np.__version__}; date {time.strftime('%Y-%m-%d')}",
        "",
        "| patches | centres | masf greedy (s) | plain greedy (s) | plain timing | ms/step masf | ms/step plain | same picks as plain | radius masf | radius plain | radius random |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r[0]:,} | {r[1]:,} | {r[2]:.1f} | {r[3]:.1f} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.4f} | {r[8]:.4f} | "
                     + (f"{r[9]:.4f}" if np.isfinite(r[9]) else "-") + f" | {r[10]:.4f} |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
