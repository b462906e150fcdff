"""Choose MASF's scoring (the fusion of its maps, the TTSA reading) on validation splits only, real and synthetic.

For each development category and training seed: train MASF as the preset says
(no test split is ever scored: the trainer is handed it, and nothing iterates it),
then score the VALIDATION split (held-out normals plus pseudo-anomalies, at both
difficulties: ``standard`` and ``hard``, ``data.pseudo_per_normal`` each) under
every scoring option below, on the one trained student and its banks: every
option is scoring-only, so it needs no retraining. Also scored: each component
(the student's cosine map, the bank's map) at each scale alone, for the
per-scale, per-component diagnostics.

The criterion is fixed before the run: the validation composite (0.5 image AUROC
+ 0.3 pixel AUROC + 0.2 PRO of the fused map), mean over the seeds, then over the
development categories (each counts once, real or synthetic) and over the two
pseudo-anomaly difficulties. The fusion is chosen first, without TTSA (it does
not depend on TTSA); the TTSA reading then, on top of the chosen fusion (TTSA is
not scored on the fusions with another bank, k=1 and 3x3: every view's bank maps
would be computed anew; the best fusion that has TTSA rows is taken).

    masf-bench data synth --out /tmp/dev256 --size 256 ...    # the synthetic development data
    python -m bench.select_scoring --dev real=../shared/data/real:metal_plate,wood synth=/tmp/dev256:carpet,screw \\
        --seeds 0 1 --out bench/results/select_scoring.json
    python -m bench.select_scoring --table --out bench/results/select_scoring.json

Trained states are kept beside --out (``<out>.states/``), so a run that stops
resumes without retraining; records are written as they come.

``--smoke-test``: a random-init resnet18 at 32 px on a small synthetic bottle, one seed, one epoch, every
option; records go to a temporary file (or --out) and the tables are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.diagnose_scoring import with_switches as apply
from masf.config import build_config
from masf.data.pseudo import ValidationSet
from masf.method.model import MASF
from masf.trial.evaluation import composite
from masf.trial.run import build_datasets, cached_teacher
from masf.trial.trainer import Trainer

# fusion options (scored without TTSA): how each component's maps are put on one scale, where the bank enters
FUSION: dict[str, dict[str, Any]] = {
    "per-scale quantile (masked)": {},
    "raw (spec)": {"model.ughf.normalize": "none"},
    "fused quantile": {"model.ughf.normalize": "fused"},
    "cosine per-scale, bank fused": {"model.ughf.bank_normalize": "fused"},
    "cosine per-scale, bank raw": {"model.ughf.bank_normalize": "none"},
    "per-scale quantile, bank at scales 1-2": {"model.samb.scales": [1, 2]},
    "fused quantile, bank at scales 1-2": {"model.ughf.normalize": "fused", "model.samb.scales": [1, 2]},
    "per-scale quantile, equal weights": {"model.ughf.scoring_weights": "equal"},
    "fused quantile, equal weights": {"model.ughf.normalize": "fused", "model.ughf.scoring_weights": "equal"},
    "per-scale quantile, bank k=1": {"model.samb.k": 1},
    "per-scale quantile, bank 3x3": {"model.samb.local_avg": 3},
}
# TTSA readings (scored on top of every fusion option; the paper's n = 5 views)
TTSA: dict[str, Optional[dict[str, Any]]] = {
    "no TTSA": None,
    "literal 0.1, mean (masked)": {},
    "literal 0.1, clean view, median": {"model.ttsa.include_clean": True, "model.ttsa.aggregate": "median"},
    "literal 0.1, clean view, min": {"model.ttsa.include_clean": True, "model.ttsa.aggregate": "min"},
    "literal 0.1, views calibrated, mean": {"model.ttsa.calibration": "views"},
    "literal 0.1, views calibrated, clean view, median": {"model.ttsa.calibration": "views", "model.ttsa.include_clean": True,
                                                          "model.ttsa.aggregate": "median"},
    "literal 0.05, mean": {"model.ttsa.phase_std": 0.05},
    "literal 0.02, mean": {"model.ttsa.phase_std": 0.02},
    "hermitian 0.1, mean": {"model.ttsa.noise": "hermitian"},
}
DIFFICULTIES = ("standard", "hard")
METRICS = ("image_auroc", "pixel_auroc", "pro")


def train_state(cfg, teacher, datasets, state_file: Path) -> dict:
    """The trained student's state and banks after ``train.epochs`` (kept in ``state_file``)."""
    if state_file.exists():
        return torch.load(state_file, map_location="cpu", weights_only=True)
    train, val, test = datasets
    torch.manual_seed(cfg.train.seed)
    model = MASF(cfg.model, teacher, seed=cfg.train.seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, model, train, test, Path(tmp), val_set=val)  # the test split is never iterated
        t0 = time.perf_counter()
        for epoch in range(1, cfg.train.epochs + 1):
            trainer.train_epoch()
            trainer.epoch = epoch
            if epoch >= cfg.train.bank_first_epoch and not trainer.bank_built:
                trainer.build_banks()
        if not trainer.bank_built:
            trainer.build_banks()
    state = {"model": {k: v for k, v in model.state_dict().items() if not k.startswith("teacher.")},
             "fitted": model.fitted_state(), "train_seconds": time.perf_counter() - t0}
    state_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, state_file)
    return state


class Scorer:
    """Scores one trained model under scoring options on validation splits; options that differ only in how
    maps are combined share the component maps (the student, SDM, UGHF and bank modules are shared objects,
    so the model's memo finds them)."""

    def __init__(self, cfg, teacher, datasets, state: dict, val_sets: dict[str, ValidationSet]):
        self.cfg, self.teacher, self.state = cfg, teacher, state
        self.train, _, self.test = datasets
        self.val_sets = val_sets
        self.memo: dict = {}
        self.banks: dict[tuple, torch.nn.ModuleList] = {}
        self.base = self._model(cfg)
        self.base.load_fitted_state(state["fitted"])
        self.banks[self._bank_key(cfg)] = self.base.banks
        self.recalibrated = False

    @staticmethod
    def _bank_key(cfg) -> tuple:
        s = cfg.model.samb
        return (s.local_avg, s.spectral_anchor, s.k)

    def _model(self, cfg) -> MASF:
        torch.manual_seed(cfg.train.seed)
        model = MASF(cfg.model, self.teacher, seed=cfg.train.seed)
        model.load_state_dict(self.state["model"], strict=False)
        return model.eval()

    def model(self, cfg, trainer: Trainer) -> MASF:
        model = self._model(cfg)
        for name in ("sdm", "students", "ughf"):
            setattr(model, name, getattr(self.base, name))
        key = self._bank_key(cfg)
        if key not in self.banks:  # another bank: built on the training normals as a trial builds it
            model.build_banks(b["image"] for b in trainer.bank_loader)
            self.banks[key] = model.banks
        model.banks = self.banks[key]
        model.memo = self.memo
        return model

    def score(self, switches: dict, ttsa: bool, student_only: bool = False, scale: Optional[int] = None) -> dict[str, dict]:
        """Validation metrics per difficulty of the model scored with ``switches`` (with TTSA or not)."""
        cfg = apply(self.cfg, switches)
        cfg.model.ttsa.enabled = ttsa
        first = next(iter(self.val_sets.values()))
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, self.base, self.train, self.test, Path(tmp), val_set=first)
            model = self.model(cfg, trainer)
            if scale is not None:  # one scale alone: a one-hot fusion
                cfg.model.ughf.scoring_weights = "learned"
                model.ughf = copy.deepcopy(self.base.ughf)
                model.ughf.learned, model.ughf.weights = False, (lambda s=scale, n=model.scales: torch.nn.functional.one_hot(
                    torch.tensor(s), n).float())
            trainer.prepare_scoring(model, recalibrate=not self.recalibrated)
            self.recalibrated = True
            out = {}
            for name, val in self.val_sets.items():
                loader = DataLoader(val, batch_size=cfg.data.eval_batch_size, shuffle=False)
                m = trainer.evaluate(loader=loader, model=model, student_only=student_only)
                out[name] = {k: float(m.metrics[k]) for k in METRICS}
                out[name]["composite"] = composite(m.metrics, cfg.eval.composite_weights)
        return out


@torch.no_grad()
def ttsa_diagnostics(scorer: "Scorer", difficulty: str = "standard") -> list[dict]:
    """Why TTSA moves the ranking, per scale and component, on one validation split: each image's score (the max
    of the component's raw map at that scale) clean and as the mean of the TTSA views' maps (the default reading),
    their AUROC, how far the views move the normals' and the anomalies' scores (in units of the normals' clean
    std), and the rank correlation of the clean and TTSA scores."""
    from sklearn.metrics import roc_auc_score

    cfg = apply(scorer.cfg, {})
    cfg.model.ttsa.enabled = True
    val = scorer.val_sets[difficulty]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, scorer.base, scorer.train, scorer.test, Path(tmp), val_set=val)
        model = scorer.model(cfg, trainer)
        trainer.prepare_scoring(model, recalibrate=not scorer.recalibrated)
        scorer.recalibrated = True
        n = cfg.model.ttsa.views
        clean: dict[tuple, list] = {}
        views: dict[tuple, list] = {}
        for batch in DataLoader(val, batch_size=cfg.data.eval_batch_size, shuffle=False):
            x = batch["image"]
            vx, seeds = model._ttsa_views(x)
            for kind, c, v in zip(("cosine", "bank"), model._components(x), model._components(vx, seeds)):
                for i in range(model.scales):
                    clean.setdefault((kind, i), []).append(c[i].flatten(1).amax(1))
                    views.setdefault((kind, i), []).append(v[i].view(n, x.shape[0], -1).mean(0).amax(1))
    labels = val.labels()
    out = []
    for key in clean:
        a, b = torch.cat(clean[key]).numpy(), torch.cat(views[key]).numpy()
        sd = float(a[labels == 0].std()) or 1e-12
        ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
        out.append({"kind": key[0], "scale": key[1], "auroc_clean": float(roc_auc_score(labels, a)),
                    "auroc_ttsa": float(roc_auc_score(labels, b)),
                    "normal_shift": float((b - a)[labels == 0].mean() / sd), "anomaly_shift": float((b - a)[labels == 1].mean() / sd),
                    "shift_spread": float((b - a)[labels == 0].std() / sd),
                    "rank_corr": float(np.corrcoef(ranks(a), ranks(b))[0, 1])})
    return out


def rows_of(records: list[dict], stage: str) -> dict[str, dict[str, dict[str, list]]]:
    """{option: {category: {"seeds": [the validation metrics of each seed, per difficulty]}}} of one stage."""
    out: dict[str, dict[str, dict[str, list]]] = {}
    for r in records:
        if r["stage"] != stage:
            continue
        out.setdefault(r["option"], {}).setdefault(r["category"], {"seeds": []})["seeds"].append(r["val"])
    return out


def ranked(rows: dict, cats: list[str]) -> list[tuple[str, float]]:
    """The options that every category has, by the criterion (mean over categories), best first."""
    complete = [o for o, v in rows.items() if all(c in v for c in cats)]
    crit = {o: float(np.mean([_criterion(rows[o][c]["seeds"]) for c in cats])) for o in complete}
    return sorted(crit.items(), key=lambda kv: -kv[1])


def chosen(records: list[dict]) -> tuple[str, str]:
    """(fusion, TTSA reading) the criterion picks: the fusion without TTSA, then the TTSA reading on it."""
    cats = sorted({r["category"] for r in records if r["stage"] != "done"})
    fusions = [o for o, _ in ranked(rows_of(records, "fusion"), cats)]
    scored = [o for o in fusions if rows_of(records, f"ttsa|{o}")]  # TTSA is not scored on every fusion
    fusion = scored[0] if scored else fusions[0]
    ttsa = ranked(rows_of(records, f"ttsa|{fusion}"), cats)
    return fusion, ttsa[0][0] if ttsa else ""


def _criterion(per_seed: list[dict], difficulty: Optional[str] = None, key: str = "composite") -> float:
    diffs = [difficulty] if difficulty else [d for d in DIFFICULTIES if d in per_seed[0]]
    return float(np.mean([np.mean([v[d][key] for d in diffs]) for v in per_seed]))


def tables(records: list[dict]) -> str:
    """The ranking of each stage's options (by the criterion), per development category and difficulty; how well
    each development set separates the options (their spread against the spread over seeds); the diagnostics."""
    out: list[str] = []
    if not records:
        return "no records"
    cats = sorted({r["category"] for r in records})
    f = lambda v: "—" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    fusion, _ = chosen(records)
    for stage, title in (("fusion", "Fusion, no TTSA"), (f"ttsa|{fusion}", f"TTSA readings, on the chosen fusion ({fusion})"),
                         ("components", "Each component at each scale alone, and together (no TTSA)")):
        rows = rows_of(records, stage)
        if stage.startswith("ttsa|"):  # beside the same fusion without TTSA
            rows = {"no TTSA": rows_of(records, "fusion").get(fusion, {}), **rows}
        if not rows:
            continue
        complete = {o: v for o, v in rows.items() if all(c in v for c in cats)}
        out += [f"### {title}", "",
                "Validation composite, mean over seeds and over the standard and hard pseudo-anomalies; columns per "
                "development category (seeds), then the criterion (mean over categories).", "",
                "| option | " + " | ".join(f"{c} ({len(next(iter(complete.values()))[c]['seeds']) if complete else 0})" for c in cats)
                + " | criterion | rank |", "|---|" + "---:|" * (len(cats) + 2)]
        crit = {o: float(np.mean([_criterion(v[c]["seeds"]) for c in cats])) for o, v in complete.items()}
        order = sorted(crit, key=lambda o: -crit[o])
        for o in order:
            v = complete[o]
            out.append(f"| {o} | " + " | ".join(f(_criterion(v[c]['seeds'])) for c in cats) + f" | {f(crit[o])} | {order.index(o) + 1} |")
        if stage != "components" and len(order) > 1:
            out += ["", "Rank of each option on each development set and difficulty (1 = best), and the set's power to "
                    "separate: the spread of the options (std over options of the seed-mean) against the spread over "
                    "seeds (mean over options of the std over seeds).", "",
                    "| development set | " + " | ".join(order) + " | options' spread | seeds' spread |",
                    "|---|" + "---:|" * (len(order) + 2)]
            for c in cats:
                for d in DIFFICULTIES:
                    means = {o: _criterion(complete[o][c]["seeds"], d) for o in order}
                    by_set = sorted(order, key=lambda o: -means[o])
                    seeds_sd = [float(np.std([s[d]["composite"] for s in complete[o][c]["seeds"]])) for o in order]
                    out.append(f"| {c} {d} | " + " | ".join(str(by_set.index(o) + 1) for o in order)
                               + f" | {np.std(list(means.values())):.4f} | "
                               + (f"{np.mean(seeds_sd):.4f}" if len(complete[order[0]][c]["seeds"]) > 1 else "—") + " |")
            out += ["", agreement(complete, cats, order)]
        if stage == "components":
            out += ["", "Per metric (image AUROC / pixel AUROC / PRO), standard pseudo-anomalies, mean over seeds:", "",
                    "| component | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
            for o in order:
                out.append(f"| {o} | " + " | ".join(" / ".join(f(_criterion(complete[o][c]['seeds'], 'standard', k)) for k in METRICS)
                                                     for c in cats) + " |")
        out.append("")
    diag = [r for r in records if r["stage"] == "ttsa-diagnostics"]
    if diag:
        out += ["### Why TTSA moves the ranking: each scale and component, clean against the mean of the TTSA views (literal 0.1)", "",
                "Image score: the max of the component's raw map; shifts in units of the validation normals' clean std "
                "(normals: mean shift, and its spread over images); rank correlation of the clean and TTSA scores.", "",
                "| development set | component | scale | AUROC clean | AUROC TTSA | normals' shift | its spread | anomalies' shift | rank corr. |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in diag:
            for d in r["val"]:
                out.append(f"| {r['category']} (seed {r['seed']}) | {d['kind']} | {d['scale']} | {d['auroc_clean']:.3f} | "
                           f"{d['auroc_ttsa']:.3f} | {d['normal_shift']:+.2f} | {d['shift_spread']:.2f} | {d['anomaly_shift']:+.2f} | "
                           f"{d['rank_corr']:.3f} |")
        out.append("")
    _, ttsa = chosen(records)
    out += [f"Chosen by the criterion: fusion **{fusion}**, TTSA **{ttsa}**.", ""]
    for stage in sorted({r["stage"] for r in records if r["stage"].startswith("ttsa|")}):
        best = ranked(rows_of(records, stage), cats)
        if best:
            out.append(f"- best TTSA reading on {stage[5:]}: {best[0][0]} ({best[0][1]:.3f})")
    return "\n".join(out)


def agreement(rows: dict, cats: list[str], order: list[str]) -> str:
    """Spearman correlation of each synthetic set's ranking (standard, hard) with the real sets' mean ranking."""
    real = [c for c in cats if not c.startswith("synth:")]
    synth = [c for c in cats if c.startswith("synth:")]
    if not real or not synth or len(order) < 3:
        return ""

    def ranks(values: list[float]) -> np.ndarray:
        return np.argsort(np.argsort(-np.asarray(values))).astype(float)

    real_mean = [np.mean([_criterion(rows[o][c]["seeds"]) for c in real]) for o in order]
    lines = ["Agreement with the real categories' validation (Spearman's rho of the options' ranking):", ""]
    for d in DIFFICULTIES:
        for c in synth:
            rho = np.corrcoef(ranks([_criterion(rows[o][c]["seeds"], d) for o in order]), ranks(real_mean))[0, 1]
            lines.append(f"- {c}, {d} pseudo-anomalies: rho = {rho:+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", nargs="+", default=[], help="NAME=ROOT:CAT,CAT development sets (NAME real or synth)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--val-fraction", type=float, default=0.3, help="data.val_fraction of the development runs")
    ap.add_argument("--per-normal", type=int, default=2, help="data.pseudo_per_normal of the validation splits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="a config override for every run (key=value)")
    ap.add_argument("--out", default=None, help="the records (JSON); default bench/results/select_scoring.json")
    ap.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    ap.add_argument("--diagnose", action="store_true", help="add the TTSA diagnostics to the finished dev runs of --out that lack them")
    ap.add_argument("--smoke-test", action="store_true",
                    help="a cheap run of the same code (tiny sizes, seconds); writes nothing into bench/results")
    args = ap.parse_args(argv)
    if args.smoke_test and not args.table:
        from bench import smoke
        from masf.config import parse_override

        smoke.check_out(args.out)
        with contextlib.ExitStack() as stack:
            root = stack.enter_context(smoke.synthetic_data(["bottle"], size=64, n_train=12, n_test=4))
            if args.out is None:
                args.out = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="select-scoring-"))) / "records.json")
            args.dev, args.seeds, args.threads, args.val_fraction = [f"synth={root}:bottle"], [0], 1, 0.5
            run(args, dict(parse_override(o) for o in (*smoke.TINY, "data.image_size=64", "train.epochs=1")))
            print(tables(json.loads(Path(args.out).read_text())))
        return
    args.out = args.out or "bench/results/select_scoring.json"
    if args.table:
        print(tables(json.loads(Path(args.out).read_text())))
        return
    from masf.config import parse_override

    run(args, dict(parse_override(o) for o in args.set))


def run(args: argparse.Namespace, base: Optional[dict] = None) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(out.read_text()) if out.exists() else []
    done = {(r["category"], r["seed"]) for r in records if r["stage"] == "done"}
    diagnosed = {(r["category"], r["seed"]) for r in records if r["stage"] == "ttsa-diagnostics"}
    torch.set_num_threads(args.threads)
    for spec in args.dev:
        name, rest = spec.split("=", 1)
        root, cats = rest.rsplit(":", 1)
        for category in cats.split(","):
            label = category if name == "real" else f"synth:{category}"
            for seed in args.seeds:
                if getattr(args, "diagnose", False):
                    if (label, seed) in done and (label, seed) not in diagnosed:
                        records.append({"stage": "ttsa-diagnostics", "category": label, "seed": seed, "option": "standard",
                                        "val": dev_run(args, base or {}, root, category, label, seed, out, diagnose_only=True)})
                        out.write_text(json.dumps(records, indent=1))
                    continue
                if (label, seed) in done:
                    continue
                records = [r for r in records if (r["category"], r["seed"]) != (label, seed)]  # a partial one again
                records += dev_run(args, base or {}, root, category, label, seed, out)
                out.write_text(json.dumps(records, indent=1))


def dev_run(args, base: dict, root: str, category: str, label: str, seed: int, out: Path, diagnose_only: bool = False) -> list:
    # the options are changes to the masked reading (the default before this selection): its scoring is the base row
    cfg = build_config(args.preset, {"model.reading": "masked", **base, "data.root": root, "data.category": category, "train.seed": seed,
                                     "data.val_fraction": args.val_fraction, "data.pseudo_per_normal": args.per_normal})
    teacher = cached_teacher(cfg.model.teacher)
    datasets = build_datasets(cfg, teacher.mean, teacher.std)
    val = datasets[1]
    val_sets = {d: ValidationSet(val.normals, seed=cfg.data.seed, calibration=val.calibration, difficulty=d,
                                 per_normal=args.per_normal) for d in DIFFICULTIES}
    t0 = time.perf_counter()
    state = train_state(cfg, teacher, datasets, out.parent / f"{out.name}.states" / f"{label.replace(':', '_')}_seed{seed}.pt")
    scorer = Scorer(cfg, teacher, datasets, state, val_sets)
    if diagnose_only:
        return ttsa_diagnostics(scorer)
    records: list[dict] = []

    def record(stage: str, option: str, val: dict) -> None:
        records.append({"stage": stage, "category": label, "seed": seed, "option": option, "val": val})
        print(f"{label} seed {seed} {stage:10s} {option:52s} " + "  ".join(
            f"{d} {v['composite']:.3f}" for d, v in val.items()), flush=True)

    for option, switches in FUSION.items():
        record("fusion", option, scorer.score(switches, ttsa=False))
    record("components", "student alone (cosine, per-scale quantile)", scorer.score({}, ttsa=False, student_only=True))
    bank = {"model.ughf.cos_weight": 0.0, "model.ughf.bank_weight": 1.0, "model.samb.scales": None}
    for norm in ("none", "quantile", "fused"):
        record("components", f"bank alone ({norm})", scorer.score({**bank, "model.ughf.normalize": norm}, ttsa=False))
    for i in range(scorer.base.scales):
        record("components", f"cosine at scale {i} alone", scorer.score({}, ttsa=False, student_only=True, scale=i))
        record("components", f"bank at scale {i} alone", scorer.score(bank, ttsa=False, scale=i))
    for fusion, fswitches in FUSION.items():
        if "bank k=1" in fusion or "bank 3x3" in fusion:  # another bank: its maps of every view anew (not scored)
            continue
        for option, tswitches in TTSA.items():
            if tswitches is not None:
                record(f"ttsa|{fusion}", option, scorer.score({**fswitches, **tswitches}, ttsa=True))
    records.append({"stage": "ttsa-diagnostics", "category": label, "seed": seed, "option": "standard", "val": ttsa_diagnostics(scorer)})
    records.append({"stage": "done", "category": label, "seed": seed, "option": "", "val": {},
                    "train_seconds": state.get("train_seconds"), "seconds": time.perf_counter() - t0,
                    "fusion_weights": scorer.base.fusion_weights()})
    return records


if __name__ == "__main__":
    main()
