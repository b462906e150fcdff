"""One trial = one (category, variant, seed): train, evaluate, write everything a person needs.

``run_trial(config, out_dir, on_epoch=None)`` is a plain function: the CLI's
``train`` command and the Ray orchestrator both call it. It writes into
out_dir: result.json (one flat row), config.yaml (the resolved config),
history.json, checkpoint.pt and figures/*.png. The row and the checkpoint carry
the config and code fingerprints (masf.fingerprint); a checkpoint of another
configuration in out_dir stops the trial instead of being reused.

Data: the root is read in its layout (masf/data/layouts.py). Where the layout
publishes validation normals (MVTec 3D-AD, MVTec AD 2, MVTec LOCO) they are the
validation normals and every training normal is fitted on; elsewhere (or with
``data.val_source=train``) the training normals are split (``data.val_fraction``,
seeded by ``data.seed``) into training normals, the only images anything is
fitted on, and validation normals. A seeded share of those (``data.calibration_share``) calibrates what
scoring calibrates (per-scale quantiles); the rest, with one pseudo-anomaly each
(masf.data.pseudo), form the validation split that ``best_on_val`` and the
validation thresholds use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

import masf
from masf.config import Config, TeacherConfig
from masf.data.layouts import Layout, resolve_layout
from masf.data.mvtec import MVTecDataset, denormalize, list_samples, split_calibration, split_normals
from masf.data.pseudo import ValidationSet
from masf.data.validate import validate_or_raise
from masf.errors import DataError, MasfError
from masf.trial.figures import heatmap_grid, roc_figure, score_histogram, training_curves
from masf.method.feature_cache import FeatureCache
from masf.fingerprint import code_fingerprint, trial_identity, variant_fingerprint
from masf.trial.memory import PeakMemory
from masf.metrics import METRIC_KEYS, SELECTION_METRICS
from masf.method.model import build_detector
from masf.config.readings import reading_of
from masf.trial.sharing import member_dir, training_fingerprint
from masf.layout import RESULT, STATS_FILE
from masf.records import save_statistics
from masf.method.teacher import Teacher, build_teacher
from masf.trial.outcome import Member
from masf.trial.trainer import CHECKPOINT, EpochCallback, Trainer




_TEACHERS: dict[str, Teacher] = {}


def cached_teacher(cfg: TeacherConfig) -> Teacher:
    """The frozen teacher, built once per process for consecutive trials that share it (Ray reuses workers)."""
    key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if key not in _TEACHERS:
        _TEACHERS.clear()  # one at a time: a sweep of several backbones does not pile them up
        _TEACHERS[key] = build_teacher(cfg)
    return _TEACHERS[key]


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise MasfError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None


@torch.no_grad()
def time_inference(model: torch.nn.Module, dataset: MVTecDataset, ttsa: bool, batch_size: int, max_images: int = 32) -> float:
    """Milliseconds per image of ``model.score`` (warm-up batch excluded), the teacher's feature cache off."""
    device = next(iter(model.teacher.parameters())).device
    n = min(len(dataset), max_images)
    x = torch.stack([dataset[i]["image"] for i in range(n)]).to(device)
    model.eval()
    cache, model.teacher.cache = model.teacher.cache, None  # timed as a fresh image is scored
    try:
        model.score(x[: min(batch_size, n)], ttsa=ttsa)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            model.score(x[i : i + batch_size], ttsa=ttsa)
        if device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        model.teacher.cache = cache
    return 1000.0 * (time.perf_counter() - start) / n


def uses_published_validation(cfg: Config, layout: Layout) -> bool:
    """Whether the validation normals are the layout's published validation split (``data.val_source``)."""
    return cfg.data.val_source == "published" or (cfg.data.val_source == "auto" and layout.published_validation)


def normals_split(cfg: Config, root: str, layout: Layout) -> tuple[str, list[int], list[int]]:
    """Where the validation normals come from (``data.val_source``) and the (training, validation) indices:
    ("published", every training normal, every published validation normal) or ("train", split_normals' split
    of the training normals)."""
    d = cfg.data
    published = uses_published_validation(cfg, layout)
    n_train = len(list_samples(root, d.category, "train", layout.name))
    if not published:
        where = layout.split_folder(Path(root) / d.category, "train")
        return ("train", *split_normals(n_train, d.val_fraction, d.seed, where=str(where)))
    if not layout.published_validation:
        raise DataError(f"data.val_source=published: the {layout.title} layout publishes no validation split "
                        "(auto or train carve data.val_fraction of the training normals)")
    n_val = len(list_samples(root, d.category, "validation", layout.name))
    if n_val == 0:
        raise DataError(f"{layout.split_folder(Path(root) / d.category, 'validation')}: no validation images "
                        "(data.val_source=train carves validation normals out of train)")
    return "published", list(range(n_train)), list(range(n_val))


def build_datasets(
    cfg: Config, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[MVTecDataset, Optional[ValidationSet], MVTecDataset]:
    """(training normals, validation split or None, test split); every subset seeded by ``data.seed``.

    The root is read in its layout (``data.layout``, else ``data.dataset``'s, else recognised). The
    validation normals are the published validation split where the layout has one (``data.val_source``
    auto or published), else ``data.val_fraction`` of the training normals."""
    d = cfg.data
    if not d.root:
        raise DataError("data.root is not set: pass --data-root or set data.root")
    root = str(Path(d.root).expanduser().resolve())
    layout, _ = resolve_layout(Path(root), d.dataset, d.layout)
    validate_or_raise(root, d.category, layout=layout.name, test_set=d.test_set)
    common = dict(image_size=d.image_size, mean=mean, std=std, seed=d.seed, layout=layout.name)
    source, train_idx, val_idx = normals_split(cfg, root, layout)
    val_split = "validation" if source == "published" else "train"
    train = MVTecDataset(root, d.category, "train", max_images=d.max_train_images, indices=train_idx, **common)
    select_idx, calib_idx = split_calibration(val_idx, d.calibration_share, d.seed)
    calibration = MVTecDataset(root, d.category, val_split, indices=calib_idx, **common) if calib_idx else None
    val = (ValidationSet(MVTecDataset(root, d.category, val_split, indices=select_idx, **common), seed=d.seed, calibration=calibration,
                         difficulty=d.pseudo, per_normal=d.pseudo_per_normal)
           if select_idx else None)
    test = MVTecDataset(root, d.category, "test", max_images=d.max_test_images, test_set=d.test_set, **common)
    return train, val, test


def write_figures(cfg: Config, test: MVTecDataset, outcome: Any, out_dir: Path, mean, std) -> list[str]:
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    final = outcome.final
    name = f"{cfg.data.category} / {cfg.variant} / seed {cfg.train.seed}"
    idx = list(final.kept)  # the last test scoring kept these images' per-scale maps (masf/trial/evaluation.py)
    paths = []
    if idx:
        images = np.stack([denormalize(test[i]["image"], mean, std) for i in idx])
        paths.append(heatmap_grid(images, final.masks[idx], final.maps[idx], final.scale_maps, fig_dir / "heatmaps.png",
                                  f"{name} (last epoch)"))
    paths += [
        roc_figure(final.image_scores, final.labels, fig_dir / "roc.png", f"image ROC: {name}"),
        score_histogram(final.image_scores, final.labels, fig_dir / "score_histogram.png", f"image scores: {name}"),
        training_curves(outcome.history, fig_dir / "training_curves.png", name),
    ]
    return [str(p) for p in paths]


def data_identity(cfg: Config) -> dict[str, str]:
    """What data a trial read: the declared dataset (or ""), the layout, and where its validation normals
    came from ("published": the layout's validation split; "train": data.val_fraction of the training normals)."""
    from masf.data.layouts import canonical_dataset

    layout, _ = resolve_layout(Path(str(cfg.data.root)).expanduser(), cfg.data.dataset, cfg.data.layout)
    source = "published" if uses_published_validation(cfg, layout) else "train"
    return {"dataset": canonical_dataset(cfg.data.dataset), "layout": layout.name, "val_source": source}


def result_row(cfg: Config, outcome: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """One flat row: key config fields, the three selections' test metrics, validation metrics,
    fingerprints, counts and timings."""
    identity = trial_identity(cfg)
    row: dict[str, Any] = {
        "category": cfg.data.category,
        "variant": cfg.variant,
        "seed": cfg.train.seed,
        "preset": cfg.preset,
        "method": cfg.model.method,
        "backbone": cfg.model.teacher.name,
        "weights_source": cfg.model.teacher.weights,
        "image_size": cfg.data.image_size,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.data.batch_size,
        "data_seed": cfg.data.seed,
        "val_fraction": cfg.data.val_fraction,
        **data_identity(cfg),
        "reading": reading_of(cfg.flat()) if cfg.model.method == "masf" else None,
        "config_fingerprint": identity["config"],
        "code_fingerprint": identity["code"],
        "variant_fingerprint": variant_fingerprint(cfg.variant),
    }
    row.update({f"last/{k}": outcome.last[k] for k in SELECTION_METRICS})
    row.update({f"best_on_val/{k}": outcome.best_on_val[k] for k in SELECTION_METRICS if k in outcome.best_on_val})
    row.update({f"best_on_test/{k}": outcome.best_on_test[k] for k in SELECTION_METRICS if k in outcome.best_on_test})
    row["best_on_test_available"] = int(bool(outcome.best_on_test))  # 0: eval.test_split=selected scored test not every epoch
    row.update({f"val/{k}": outcome.val_last[k] for k in METRIC_KEYS if k in outcome.val_last})
    row.update(
        best_epoch=outcome.best_epoch,
        best_val_epoch=outcome.best_val_epoch,
        skipped_batches=outcome.skipped_batches,
        skipped_steps=outcome.skipped_steps,
        total_batches=outcome.total_batches,
        optimizer_steps=outcome.optimizer_steps,
        trainable_parameters=outcome.trainable_parameters,
        calibration_shared_with_selection=outcome.calibration_shared,
        train_seconds=round(outcome.train_seconds, 3),
        eval_seconds=round(outcome.final.seconds, 3),
        test_images=int(len(outcome.final.labels)),
    )
    row.update(outcome.student_only)
    row.update(outcome.selection_extras)  # per defect type metrics and the SegF1 threshold (masf/trial/outcome.py)
    if outcome.resumed_code:
        row["resumed_from_code"] = outcome.resumed_code
    row.update(outcome.bank_stats)
    row.update(extra)
    return row


def run_trial(
    config: Config,
    out_dir: str | Path,
    on_epoch: Optional[EpochCallback] = None,
    resume: bool = True,
    on_batch: Optional[Callable[[int, int], None]] = None,
    feature_cache: Optional[FeatureCache] = None,
) -> dict[str, Any]:
    """Train and evaluate one trial; return the flat result row (also written to out_dir/result.json).

    ``feature_cache``: where the teacher's features are kept (masf/method/feature_cache.py; None: computed each time).
    """
    return _run(config, None, Path(out_dir), on_epoch, resume, on_batch, feature_cache)[None]


def run_group(
    lead: Config,
    members: list[tuple[str, Config]],
    out_dir: str | Path,
    group: str,
    on_epoch: Optional[EpochCallback] = None,
    resume: bool = True,
    on_batch: Optional[Callable[[int, int], None]] = None,
    feature_cache: Optional[FeatureCache] = None,
    lead_key: Optional[str] = None,
) -> dict[str, dict[str, Any]]:
    """Train ``lead``'s training part once and score it as each member (trial key, config) says; every
    member's training part must be the lead's (masf/trial/sharing.py). Each member's row, config, history and
    figures go to out_dir/members/KEY (``member_dir``); returns trial key -> row."""
    fp = training_fingerprint(lead)
    for key, cfg in members:
        if training_fingerprint(cfg) != fp:
            raise MasfError(f"{key} cannot share the training of group {group}: its training part differs "
                            f"(training fingerprint {training_fingerprint(cfg)}, the group's {fp})")
    return _run(lead, members, Path(out_dir), on_epoch, resume, on_batch, feature_cache, group=group, lead_key=lead_key)


def _share(lead: torch.nn.Module, model: torch.nn.Module, others: list[tuple[Config, torch.nn.Module]], cfg: Config) -> None:
    """Make a member's detector score with the trained modules: the lead's SDM, students and UGHF scale
    weights (learned from the students' losses), and the banks of an earlier detector with the same bank
    config. A member without a student keeps UGHF's untrained weights, as it has when it runs alone."""
    model.sdm = lead.sdm
    if model.students is not None:
        model.students, model.ughf = lead.students, lead.ughf
    if model.banks is not None:
        same = next((m for c, m in others if m.banks is not None and c.model.samb == cfg.model.samb), None)
        if same is not None:
            model.banks = same.banks


def _run(
    cfg: Config,
    members: Optional[list[tuple[str, Config]]],
    out_dir: Path,
    on_epoch: Optional[EpochCallback],
    resume: bool,
    on_batch: Optional[Callable[[int, int], None]],
    feature_cache: Optional[FeatureCache],
    group: Optional[str] = None,
    lead_key: Optional[str] = None,
) -> dict[Optional[str], dict[str, Any]]:
    with PeakMemory() as peak:
        return _run_measured(cfg, members, out_dir, on_epoch, resume, on_batch, feature_cache, group, lead_key, peak)


def _run_measured(cfg: Config, members: Optional[list[tuple[str, Config]]], out_dir: Path, on_epoch: Optional[EpochCallback],
                  resume: bool, on_batch: Optional[Callable[[int, int], None]], feature_cache: Optional[FeatureCache],
                  group: Optional[str], lead_key: Optional[str], peak: PeakMemory) -> dict[Optional[str], dict[str, Any]]:
    start = time.perf_counter()
    _check_writable(out_dir)
    if cfg.train.threads > 0:
        import faiss

        torch.set_num_threads(cfg.train.threads)
        faiss.omp_set_num_threads(cfg.train.threads)  # the bank search shares the trial's CPU budget
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    teacher = cached_teacher(cfg.model.teacher)
    # train.feature_cache: auto uses the cache on the teacher's per-image path (CPU) only, on on every path
    teacher.cache = feature_cache if cfg.train.feature_cache != "off" else None
    teacher.cache_batched = cfg.train.feature_cache == "on"
    try:
        train_set, val_set, test_set = build_datasets(cfg, teacher.mean, teacher.std)
        torch.manual_seed(cfg.train.seed)  # model init does not depend on what ran before
        model = build_detector(cfg.model, teacher, seed=cfg.train.seed)
        group_members, identity = None, None
        if members is not None:
            rng = torch.get_rng_state()  # the members' own modules are replaced: training sees the RNG of a lone trial
            built: list[tuple[Config, torch.nn.Module]] = [(cfg, model)]
            group_members = []
            for key, mcfg in members:
                if key == lead_key:
                    mmodel = model
                else:
                    mmodel = build_detector(mcfg.model, teacher, seed=mcfg.train.seed)
                    _share(model, mmodel, built, mcfg)
                    built.append((mcfg, mmodel))
                group_members.append(Member(key, mcfg, mmodel))
            torch.set_rng_state(rng)
            identity = {"trial": f"group {group}", "config": training_fingerprint(cfg), "code": code_fingerprint()}
        trainer = Trainer(cfg, model, train_set, test_set, out_dir, on_epoch=on_epoch, on_batch=on_batch, val_set=val_set,
                          calibration_set=val_set.calibration if val_set is not None else None,
                          members=group_members, identity=identity)
        if resume and (out_dir / CHECKPOINT).exists():
            trainer.load_checkpoint(out_dir / CHECKPOINT)  # refuses another configuration's checkpoint
        if members is None:
            cfg.save(out_dir / "config.yaml")
        trainer.fit(resume=False)  # continues from the loaded checkpoint, if any
        rows, timings = {}, {}
        for m in trainer.members:
            mdir = out_dir if members is None else member_dir(out_dir, m.name)
            mdir.mkdir(parents=True, exist_ok=True)
            if members is not None:
                m.cfg.save(mdir / "config.yaml")
            extra = {"training_group": group, "scored_from": lead_key, "group_members": len(members),
                     "training_fingerprint": training_fingerprint(cfg)} if members is not None else {}
            extra["peak"] = peak
            rows[m.name] = _finish(m.cfg, m.model, trainer, trainer.outcomes[m.name], test_set, train_set, val_set,
                                   teacher, mdir, extra, start, timings)
        return rows
    finally:
        teacher.cache, teacher.cache_batched = None, False


def _finish(cfg: Config, model: torch.nn.Module, trainer: Trainer, outcome: Any, test_set: MVTecDataset, train_set: Any,
            val_set: Any, teacher: Teacher, out_dir: Path, extra: dict[str, Any], start: float,
            timings: Optional[dict] = None) -> dict[str, Any]:
    """A member's timings, history, figures and result row, written to out_dir. ``timings``: those of the group's
    members so far; a member whose scoring is another's but for model.ttsa.enabled (which a timing sets itself:
    full and no_ttsa) times the same computation, and takes that member's figures instead of timing it again."""
    bs = cfg.data.eval_batch_size
    flat = cfg.flat()
    same_scoring = json.dumps({k: v for k, v in flat.items() if k not in ("variant", "model.ttsa.enabled")}, sort_keys=True, default=str)
    timings = {} if timings is None else timings

    def timed(ttsa: bool) -> Optional[float]:
        n = cfg.eval.timing_images
        if n <= 0:
            return None
        if (same_scoring, ttsa) not in timings:
            timings[(same_scoring, ttsa)] = round(time_inference(model, test_set, ttsa, bs, max_images=n), 3)
        return timings[(same_scoring, ttsa)]

    peak = extra.pop("peak", None)
    extra = {
        **extra,
        "infer_ms_per_image": timed(False),
        "infer_ms_per_image_ttsa": timed(True),
        "device": str(trainer.device),
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
        "masf_version": masf.__version__,
        "train_images": len(train_set),
        "val_images": len(val_set) if val_set is not None else 0,
        "calibration_images": len(val_set.calibration) if val_set is not None and val_set.calibration is not None else 0,
        "torch_version": torch.__version__,
        **(teacher.cache.stats() if teacher.cache is not None else {}),
    }
    (out_dir / "history.json").write_text(json.dumps(outcome.history, indent=1))
    if outcome.test_stats:
        save_statistics(out_dir / STATS_FILE, outcome.test_stats)
    figures = write_figures(cfg, test_set, outcome, out_dir, teacher.mean, teacher.std) if cfg.eval.figures else []
    extra["trial_seconds"] = round(time.perf_counter() - start, 3)
    if peak is not None:  # of the whole trial (a group: of its one training and every member so far)
        extra.update(peak.result())
    row = result_row(cfg, outcome, extra)
    row["figures"] = len(figures)
    tmp = out_dir / (RESULT + ".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    os.replace(tmp, out_dir / RESULT)
    return row
