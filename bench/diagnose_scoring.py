"""Where does a trained MASF trial's score come from? Re-score its test split with parts switched.

Loads a finished trial folder (config.yaml + checkpoint.pt from `masf-bench train`
or a sweep), keeps the trained student, and evaluates the same test split with
scoring options changed one at a time: TTSA on/off, cosine-only, bank-only,
one scale at a time, test-time masking, bank k, bank neighbourhood averaging,
spectral anchor on/off. Every row is measured on the TEST split: it explains a
result, it must not pick a configuration silently (bench/RESULTS.md says which
choices were made after looking at these numbers).

The trial's data split is rebuilt as masf/trial/run.py builds it (training normals, validation
split, calibration normals, seeded by data.seed), and before each row is scored the detector is
prepared as a trial prepares it (BatchNorm recalibration, quantile calibration on the calibration
normals), so every row is calibrated for its own scoring.

    python -m bench.diagnose_scoring TRIAL_DIR [--out results.md] [--smoke-test]

--smoke-test: a few of the rows (as trained, no TTSA, bank k=1, bank 3x3, scale 0 only) on
the same trial, one thread; prints only.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from masf.config import Config, load_config_file
from masf.method.model import MASF
from masf.trial.trainer import CHECKPOINT, Trainer
from masf.trial.run import build_datasets, cached_teacher
from bench import smoke
from bench.report import emit

ROWS: list[tuple[str, dict]] = [
    ("as trained (config)", {}),
    ("no TTSA", {"model.ttsa.enabled": False}),
    ("cosine only", {"model.ttsa.enabled": False, "model.ughf.cos_weight": 1.0, "model.ughf.bank_weight": 0.0}),
    ("bank only", {"model.ttsa.enabled": False, "model.ughf.cos_weight": 0.0, "model.ughf.bank_weight": 1.0}),
    ("test-time masking", {"model.ttsa.enabled": False, "model.amfd.test_masking": True}),
    ("bank k=1", {"model.ttsa.enabled": False, "model.samb.k": 1}),
    ("bank k=9", {"model.ttsa.enabled": False, "model.samb.k": 9}),
    ("bank 3x3 averaging", {"model.ttsa.enabled": False, "model.samb.local_avg": 3}),
    ("bank without spectral anchor", {"model.ttsa.enabled": False, "model.samb.spectral_anchor": False}),
    ("bank only, 3x3, no anchor", {"model.ttsa.enabled": False, "model.ughf.cos_weight": 0.0, "model.ughf.bank_weight": 1.0,
                                   "model.samb.local_avg": 3, "model.samb.spectral_anchor": False}),
    ("cos + bank(3x3)", {"model.ttsa.enabled": False, "model.samb.local_avg": 3}),
]
BANK_KEYS = ("model.samb.k", "model.samb.local_avg", "model.samb.spectral_anchor")
SMOKE_ROWS = ("as trained (config)", "no TTSA", "bank k=1", "bank 3x3 averaging")


def with_switches(cfg: Config, changes: dict) -> Config:
    """A copy of ``cfg`` with the dotted ``changes`` set."""
    out = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        node = out
        *path, last = dotted.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, last, value)
    return out


def evaluate(cfg: Config, trial_dir: Path, teacher, datasets: tuple, state: dict, banks: dict[tuple, list[dict]],
             scale: int | None = None) -> dict:
    """Test metrics of the trained student scored as ``cfg`` says. ``datasets``: (train, validation, test) of
    ``build_datasets``; ``banks``: bank states by what they depend on (k is a search setting), filled as built."""
    train, val, test = datasets
    torch.manual_seed(cfg.train.seed)
    model = MASF(cfg.model, teacher, seed=cfg.train.seed)
    model.load_state_dict(state["model"], strict=False)
    if scale is not None:  # one scale only: fixed one-hot fusion
        model.ughf.learned = False
        model.ughf.weights = lambda s=scale, n=model.scales: torch.nn.functional.one_hot(torch.tensor(s), n).float()
    # as masf/trial/run.py builds it: the validation split and its calibration normals (quantile normalisation)
    trainer = Trainer(cfg, model, train, test, trial_dir / "diagnose", val_set=val,
                      calibration_set=val.calibration if val is not None else None)
    if model.banks is not None:
        key = (cfg.model.samb.local_avg, cfg.model.samb.spectral_anchor)
        if key in banks:
            for bank, bstate in zip(model.banks, banks[key]):
                bank.bank.load_state(bstate)
                bank.bank.k = cfg.model.samb.k
            trainer.bank_built = True
        else:
            trainer.build_banks()
            banks[key] = [b.bank.state() for b in model.banks]
    trainer.prepare_scoring()  # calibrated for this row's scoring, as a trial's evaluation is
    return trainer.evaluate().metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trial_dir", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke_test:
        smoke.check_out(args.out)
        args.threads = 1
    torch.set_num_threads(args.threads)
    cfg = load_config_file(args.trial_dir / "config.yaml")
    state = torch.load(args.trial_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    torch.manual_seed(cfg.train.seed)  # as run_trial builds it: a random-init teacher (weights none) is the trial's own
    teacher = cached_teacher(cfg.model.teacher)
    datasets = build_datasets(cfg, teacher.mean, teacher.std)
    banks: dict[tuple, list[dict]] = {}
    rows = []
    weights = [float(state["model"]["ughf.log_vars"][i]) for i in range(len(teacher.channels))] if "ughf.log_vars" in state["model"] else []
    for name, changes in ROWS:
        if args.smoke_test and name not in SMOKE_ROWS:
            continue
        t0 = time.time()
        m = evaluate(with_switches(cfg, changes), args.trial_dir, teacher, datasets, state, banks)
        rows.append((name, m, time.time() - t0))
        print(f"{name:32s} img {m['image_auroc']:.3f} px {m['pixel_auroc']:.3f} pro {m['pro']:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    for scale in range(1 if args.smoke_test else len(teacher.channels)):
        for label, changes in ((f"scale {scale} only", {"model.ttsa.enabled": False}),
                               (f"scale {scale} only, bank 3x3", {"model.ttsa.enabled": False, "model.samb.local_avg": 3})):
            t0 = time.time()
            m = evaluate(with_switches(cfg, changes), args.trial_dir, teacher, datasets, state, banks, scale=scale)
            rows.append((label, m, time.time() - t0))
            print(f"{label:32s} img {m['image_auroc']:.3f} px {m['pixel_auroc']:.3f} pro {m['pro']:.3f}", flush=True)
    lines = [
        f"Trial `{args.trial_dir.name}`: {cfg.data.category} / {cfg.variant} / seed {cfg.train.seed}, preset {cfg.preset}, "
        f"{cfg.train.epochs} epochs; learned log-variances {['%.3f' % w for w in weights]}. Test split, re-scored.",
        "",
        "| scoring | image AUROC | pixel AUROC | PRO |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {n} | {m['image_auroc']:.3f} | {m['pixel_auroc']:.3f} | {m['pro']:.3f} |" for n, m, _ in rows]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
