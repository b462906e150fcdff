"""How hard is the synthetic dataset? A bank-only (PatchCore-style) scorer on the packaged backbone.

Generates the synthetic dataset into a temporary folder, then for each category:
teacher features at ``--layers`` (3x3 average pooling, upsampled to the largest
map and concatenated), a memory bank of all training patches, the L2 distance
of each test patch to its nearest bank patch (k=1, FAISS) as the anomaly map,
the map's maximum as the image score; image and pixel AUROC with scikit-learn.
Prints a table and writes it as markdown.

    python -m bench.synth_difficulty [--out bench/results/synth_difficulty.md] [--smoke-test]

--smoke-test: bottle and carpet only (only they are generated), 64 px, 4 train and 4 test images
each; prints only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from masf.config import TeacherConfig
from masf.data import MVTEC_CATEGORIES
from masf.data.synth import generate_dataset
from masf.method.teacher import Teacher, build_teacher


def load(folder: Path, size: int) -> tuple[np.ndarray, list[Path]]:
    """All PNGs of a folder as (N, H, W, 3) uint8, resized to ``size``."""
    files = sorted(folder.glob("*.png"))
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files]
    return np.stack(imgs), files


def embed(teacher: Teacher, imgs: np.ndarray, layers: list[int], batch: int = 16) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, C, h, w) patch features at the finest chosen scale."""
    mean = torch.tensor(teacher.mean).view(1, 3, 1, 1)
    std = torch.tensor(teacher.std).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[i:i + batch]).permute(0, 3, 1, 2).float() / 255
        feats = teacher((x - mean) / std)
        picked = [F.avg_pool2d(feats[j], 3, 1, 1) for j in layers]  # local neighbourhood, as PatchCore does
        hw = picked[0].shape[-2:]
        out.append(torch.cat([picked[0]] + [F.interpolate(f, size=hw, mode="bilinear", align_corners=False) for f in picked[1:]], 1))
    return torch.cat(out)


def score_category(teacher: Teacher, root: Path, size: int, layers: list[int]) -> tuple[float, float]:
    """Image AUROC and pixel AUROC of the bank-only scorer on one category folder."""
    train, _ = load(root / "train" / "good", size)
    bank = embed(teacher, train, layers)
    c = bank.shape[1]
    index = faiss.IndexFlatL2(c)
    index.add(np.ascontiguousarray(bank.permute(0, 2, 3, 1).reshape(-1, c).numpy()))
    scores, labels, maps, masks = [], [], [], []
    for kind_dir in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        imgs, files = load(kind_dir, size)
        feats = embed(teacher, imgs, layers)
        n, _, h, w = feats.shape
        dist, _ = index.search(np.ascontiguousarray(feats.permute(0, 2, 3, 1).reshape(-1, c).numpy()), 1)
        amap = torch.from_numpy(np.sqrt(np.maximum(dist, 0)).reshape(n, 1, h, w))
        amap = F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
        amap = np.stack([ndimage.gaussian_filter(m, 4) for m in amap])  # the usual smoothing of the upsampled map
        for f, m in zip(files, amap):
            good = kind_dir.name == "good"
            if good:
                gt = np.zeros((size, size), bool)
            else:
                gt_file = root / "ground_truth" / kind_dir.name / f"{f.stem}_mask.png"
                gt = np.asarray(Image.open(gt_file).resize((size, size), Image.NEAREST)) > 127
            scores.append(float(m.max()))
            labels.append(0 if good else 1)
            maps.append(m.ravel())
            masks.append(gt.ravel())
    image_auroc = roc_auc_score(labels, scores)
    pixel_auroc = roc_auc_score(np.concatenate(masks), np.concatenate(maps))
    return float(image_auroc), float(pixel_auroc)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="image side the data is generated at and scored at")
    ap.add_argument("--train", type=int, default=20, help="normal training images per category")
    ap.add_argument("--test", type=int, default=20, help="test images per category")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--layers", default="1,2,3", help="teacher feature levels (out_indices) to use, comma-separated")
    ap.add_argument("--categories", default=",".join(MVTEC_CATEGORIES), help="comma-separated categories to score")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--smoke-test", action="store_true",
                    help="a cheap run of the same code: bottle and carpet at 64 px, 4 + 4 images; writes nothing into bench/results")
    args = ap.parse_args(argv)
    if args.smoke_test:
        if args.out is not None and args.out.resolve().is_relative_to(Path(__file__).resolve().parent / "results"):
            raise SystemExit("--smoke-test writes nothing into bench/results: leave --out out or point it elsewhere")
        args.size, args.train, args.test, args.categories = 64, 4, 4, "bottle,carpet"
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    levels = [int(v) for v in args.layers.split(",")]
    categories = [v for v in args.categories.split(",") if v]

    teacher = build_teacher(TeacherConfig(name="tf_efficientnet_lite0", out_indices=[1, 2, 3], weights="packaged"))
    layers = [[1, 2, 3].index(v) for v in levels]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generated = categories if args.smoke_test else None  # all 15 (timed as a whole); a smoke test only its own
        generate_dataset(root, categories=generated, seed=args.seed, size=args.size, n_train=args.train, n_test=args.test)
        gen_s = time.perf_counter() - t0
        gen_what = "all 15 categories" if generated is None else f"the {len(generated)} scored categories"
        rows = []
        for cat in categories:
            t1 = time.perf_counter()
            img_auc, pix_auc = score_category(teacher, root / cat, args.size, layers)
            rows.append((cat, img_auc, pix_auc))
            print(f"{cat:<12} image AUROC {img_auc:.3f}  pixel AUROC {pix_auc:.3f}  ({time.perf_counter() - t1:.1f} s)", flush=True)

    mean_img = float(np.mean([r[1] for r in rows]))
    mean_pix = float(np.mean([r[2] for r in rows]))
    in_band = sum(0.75 <= r[1] <= 0.99 for r in rows)
    print(f"{'mean':<12} image AUROC {mean_img:.3f}  pixel AUROC {mean_pix:.3f}")
    print(f"{in_band}/{len(rows)} categories with image AUROC in [0.75, 0.99]; generation of {gen_what}: {gen_s:.2f} s")

    if args.out is not None:
        command = "python -m bench.synth_difficulty " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        lines = [
            "# Difficulty of the synthetic dataset",
            "",
            "A bank-only (PatchCore-style) scorer on the packaged ImageNet `tf_efficientnet_lite0` "
            f"(out_indices {levels}, 3x3 average pooling, all training patches in the bank, k=1 L2 distance, "
            "Gaussian-smoothed map, image score = map maximum). The target is an image AUROC between about "
            "0.75 and 0.99 on most categories: neither trivial nor hopeless.",
            "",
            f"- command: `{command.strip()}`",
            f"- data: seed {args.seed}, {args.size}x{args.size}, {args.train} train and {args.test} test images per category",
            f"- machine: {os.cpu_count()}-core {platform.machine()} CPU, {'a GPU (unused)' if torch.cuda.is_available() else 'no GPU'}; "
            f"torch {torch.__version__}, {args.threads} thread(s)",
            f"- date: {dt.date.today().isoformat()}",
            f"- generation time of {gen_what}: {gen_s:.2f} s",
            f"- categories with image AUROC in [0.75, 0.99]: {in_band} of {len(rows)}",
            "",
            "| category | image AUROC | pixel AUROC |",
            "|---|---:|---:|",
            *[f"| {c} | {i:.3f} | {p:.3f} |" for c, i, p in rows],
            f"| **mean** | **{mean_img:.3f}** | **{mean_pix:.3f}** |",
            "",
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
