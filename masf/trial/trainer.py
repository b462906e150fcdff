"""The trainer: AdamW, warm-up + cosine restarts, AMP on CUDA, skipped-batch and
skipped-step accounting, the bank build, periodic evaluation on the validation
and test splits, three epoch selections and resumable, fingerprinted checkpoints.

It drives any detector of ``masf.method.model.build_detector`` (MASF, or a
baseline that trains nothing). Selections: ``last`` (the final epoch, the
headline), ``best_on_val`` (the epoch with the best validation composite: test
metrics of an epoch chosen without the test split) and ``best_on_test`` (the
paper's protocol, chosen on the test split, optimistic).

No Ray and no MLflow here: the orchestrator passes ``on_epoch`` to hear about
each epoch.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from masf.config import Config
from masf.errors import MasfError, TrainingError
from masf.trial.deferred import DeferredTests, scoring_state
from masf.trial.outcome import Member, TrainOutcome, selection_extras
from masf.trial.evaluation import Evaluation, composite, heatmap_indices, score_split, select_epoch, val_threshold_metrics
from masf.fingerprint import trial_identity
from masf.metrics import METRIC_KEYS, SELECTION_METRICS, VAL_THRESHOLD_METRICS, defect_type_metrics
from masf.records import test_statistics

CHECKPOINT = "checkpoint.pt"

EpochCallback = Callable[[dict[str, Any]], None]


class CheckpointMismatch(MasfError):
    """A checkpoint in the output folder belongs to another configuration."""


def _fit_owner(model: torch.nn.Module) -> int:
    """What holds a detector's fitted state, shared by members that share it: MASF's banks, else the detector."""
    return id(getattr(model, "banks", model))


def grads_finite(params: list[torch.Tensor]) -> bool:
    """Whether every gradient of ``params`` is finite (parameters without a gradient are fine)."""
    grads = [p.grad for p in params if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def lr_factor(step: int, steps_per_epoch: int, cfg: Config) -> float:
    """Multiplier of the base lr at optimiser step ``step``: linear warm-up, then cosine with warm restarts."""
    t = cfg.train
    warm_steps = t.warmup_epochs * steps_per_epoch
    if step < warm_steps:
        return (step + 1) / warm_steps
    period = max(1, t.restart_epochs * steps_per_epoch)
    phase = ((step - warm_steps) % period) / period
    eta = t.eta_min + (t.lr - t.eta_min) * 0.5 * (1.0 + math.cos(math.pi * phase))
    return eta / t.lr


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        train_set: Dataset,
        test_set: Dataset,
        out_dir: Path,
        on_epoch: Optional[EpochCallback] = None,
        on_batch: Optional[Callable[[int, int], None]] = None,
        val_set: Optional[Dataset] = None,
        calibration_set: Optional[Dataset] = None,
        members: Optional[list[Member]] = None,
        identity: Optional[dict[str, str]] = None,
    ):
        """``members``: the scorings of a training group (default: ``model`` scored as ``cfg`` says);
        ``identity``: what the checkpoint belongs to (default: ``cfg``'s trial identity)."""
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.model = model.to(self.device)
        self.out_dir = Path(out_dir)
        self.on_epoch = on_epoch
        self.on_batch = on_batch
        self.amp = self.device.type == "cuda" and cfg.train.amp == "auto"
        self.loader_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.mask_gen = torch.Generator().manual_seed(cfg.train.seed + 2)
        self.train_loader = DataLoader(
            train_set, batch_size=cfg.data.batch_size, shuffle=True, generator=self.loader_gen,
            num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
        )
        self.bank_loader = DataLoader(train_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
        self.test_loader = DataLoader(test_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
        # the test images of the heatmap figure: the test scoring keeps their per-scale maps
        samples = getattr(test_set, "samples", None)
        # each test image's defect type (its test folder): the per-type metrics and the per-image records keep it
        self.test_types: Optional[list[str]] = [x.defect_type for x in samples] if samples is not None else None
        self.heatmap_rows = (heatmap_indices(test_set.labels(), self.test_types, cfg.eval.heatmap_images)
                             if cfg.eval.figures and samples is not None else ())
        self.val_loader = (
            DataLoader(val_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
            if val_set is not None and len(val_set) else None
        )
        if calibration_set is None:  # a validation split carries its calibration normals
            calibration_set = getattr(val_set, "calibration", None)
        self.calibration_shared = False  # calibrating on the normals that also select
        self.grouped = members is not None
        self.members = members if members is not None else [Member(None, cfg, model)]
        for m in self.members:
            m.model.to(self.device)
        if any(getattr(m.model, "calibrates", False) for m in self.members) and not (calibration_set is not None and len(calibration_set)):
            normals = getattr(val_set, "normals", None)
            if normals is None or not len(normals):
                raise MasfError("model.ughf.normalize=quantile calibrates on held-out normals, and this trial has none: "
                                "set data.val_fraction and data.calibration_share above 0, or model.ughf.normalize=none")
            warnings.warn(f"{len(normals)} held-out normal(s) are too few to keep calibration apart from selection "
                          "(data.calibration_share): the validation normals that select also calibrate", stacklevel=2)
            calibration_set, self.calibration_shared = normals, True
        self.calibration_loader = (
            DataLoader(calibration_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
            if calibration_set is not None and len(calibration_set) else None
        )
        self.identity = identity or trial_identity(cfg)
        self.resumed_code: Optional[str] = None
        self.steps_per_epoch = cfg.train.steps_per_epoch or max(1, len(self.train_loader))
        params = model.trainable_parameters()
        groups = model.param_groups(cfg.train.lr) if hasattr(model, "param_groups") else [{"params": params}]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay) if params else None
        self.scheduler = (
            torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.steps_per_epoch, cfg))
            if self.optimizer
            else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        # the training records of each epoch (a group's members keep them with their metrics in Member.history)
        self.train_history: list[dict[str, Any]] = [] if self.grouped else self.members[0].history
        self.epoch = 0
        self.bank_built = False
        # eval.test_split=selected: intermediate evaluations score validation only (masf/trial/deferred.py)
        self.test_every = cfg.eval.test_split == "every"
        self.deferred = DeferredTests()

    @property
    def history(self) -> list[dict[str, Any]]:
        """The (first) member's history: training records with its metrics."""
        return self.members[0].history

    @property
    def bank_stats(self) -> dict[str, float]:
        return self.members[0].bank_stats

    # ------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        model_state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("teacher.")}
        state = {
            "fingerprint": self.identity,
            "epoch": self.epoch,
            "model": model_state,
            "fitted": self.model.fitted_state() if self.bank_built and not self.grouped else {},
            "bank_built": self.bank_built,
            "bank_stats": self.bank_stats,
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "loader": self.loader_gen.get_state(),
                "mask": self.mask_gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "history": self.train_history,
            "deferred": self.deferred.state(),
        }
        if self.grouped:  # each member's history and fitted state (banks shared by members stored once)
            fitted, index = [], {}
            for m in self.members:
                if self.bank_built and _fit_owner(m.model) not in index:
                    index[_fit_owner(m.model)] = len(fitted)
                    fitted.append(m.model.fitted_state())
            state["members"] = {m.fingerprint: {"history": m.history, "bank_stats": m.bank_stats,
                                                "fitted": index.get(_fit_owner(m.model))} for m in self.members}
            state["member_fitted"] = fitted
        return state

    def save_checkpoint(self) -> Path:
        path = self.out_dir / CHECKPOINT
        try:
            atomic_save(self.state(), path)
        except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as RuntimeError
            reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:160]
            raise MasfError(f"cannot write checkpoint {path}: {reason}") from None
        return path

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another configuration; note one written by other code."""
        theirs = state.get("fingerprint") if isinstance(state, dict) else None
        mine = self.identity
        remedy = "use another output folder, or --restart (train.resume off) to discard it"
        if not isinstance(theirs, dict) or "config" not in theirs:
            raise CheckpointMismatch(f"{path} has no configuration fingerprint (written by an older masf-bench), "
                                     f"this trial is {mine['trial']} (config {mine['config']}): {remedy}")
        if theirs["config"] != mine["config"]:
            raise CheckpointMismatch(f"{path} belongs to another configuration: it holds {theirs.get('trial')} "
                                     f"(config {theirs['config']}), this trial is {mine['trial']} "
                                     f"(config {mine['config']}): {remedy}")
        if theirs.get("code") != mine["code"]:
            self.resumed_code = str(theirs.get("code"))
            warnings.warn(f"{path} was written by other code (code {theirs.get('code')}, now {mine['code']}); "
                          "resuming it: its result records both", stacklevel=2)

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.check_checkpoint(state, path)
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise MasfError(f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.bank_built = bool(state["bank_built"])
        if not self.grouped:
            if self.bank_built:
                self.model.load_fitted_state(state["fitted"])
            self.members[0].bank_stats.update(state["bank_stats"])
        if self.optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.loader_gen.set_state(state["rng"]["loader"])
        self.mask_gen.set_state(state["rng"]["mask"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch = int(state["epoch"])
        self.deferred.load_state(state.get("deferred", {}))
        if not self.grouped:
            self.members[0].history[:] = list(state["history"])
            return
        self.train_history[:] = list(state["history"])
        saved, loaded = state.get("members", {}), set()
        for m in self.members:  # a member new to the group starts from the training records (no metrics yet)
            mine = saved.get(m.fingerprint)
            m.history[:] = list(mine["history"]) if mine else [dict(r) for r in self.train_history]
            if mine and mine["fitted"] is not None and self.bank_built:
                if _fit_owner(m.model) not in loaded:  # banks that members share are loaded once
                    m.model.load_fitted_state(state["member_fitted"][mine["fitted"]])
                    loaded.add(_fit_owner(m.model))
                m.bank_stats.update(mine["bank_stats"])

    # ------------------------------------------------------------ steps

    def _epoch_batches(self) -> Any:
        """One epoch's training batches: a pass over the loader, or ``train.steps_per_epoch`` of them,
        cycling the loader (reshuffled on each pass)."""
        n = self.cfg.train.steps_per_epoch
        if n is None:
            yield from self.train_loader
            return
        given = 0
        while given < n:
            for batch in self.train_loader:
                yield batch
                given += 1
                if given == n:
                    return

    def train_epoch(self) -> dict[str, Any]:
        self.model.train()
        losses, per_scale, skipped, skipped_steps, batches = [], [], 0, 0, 0
        terms: list[dict[str, float]] = []
        params = self.model.trainable_parameters()
        for batch in self._epoch_batches():
            step = self.epoch * self.steps_per_epoch + batches
            batches += 1
            x = batch["image"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                loss, parts = self.model.training_loss(x, self.mask_gen)
            if self._inject_fault(step):
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                skipped += 1  # counted and reported, never silently dropped
                self.optimizer.zero_grad(set_to_none=True)
                self._schedule_step()
                continue
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.scaler.is_enabled():
                # the GradScaler skips the step when a gradient is inf/NaN and lowers its scale
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                skipped_steps += int(self.scaler.get_scale() < scale)
            elif grads_finite(params):
                self.optimizer.step()
            else:  # no scaler on CPU: the same skip, checked explicitly
                skipped_steps += 1
                self.optimizer.zero_grad(set_to_none=True)
            self._schedule_step()
            losses.append(float(loss.detach()))
            per_scale.append([float(p.detach()) for p in parts])
            terms.append(dict(getattr(self.model, "loss_terms", {}) or {}))
            if self.on_batch:
                self.on_batch(batches, self.steps_per_epoch)
        record: dict[str, Any] = {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "skipped_batches": skipped,
            "skipped_steps": skipped_steps,
            "batches": batches,
        }
        if per_scale:
            for i, v in enumerate(np.mean(per_scale, axis=0)):
                record[f"loss/scale{i}"] = float(v)
        for key in terms[0] if terms else []:  # the cosine and amplitude terms of each scale
            record[f"loss/{key}"] = float(np.mean([t[key] for t in terms]))
        for i, w in enumerate(self.model.fusion_weights()):
            record[f"fusion_weight/scale{i}"] = w
        return record

    def _schedule_step(self) -> None:
        with warnings.catch_warnings():  # the schedule counts every step, also skipped ones
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()

    def _inject_fault(self, step: int) -> bool:
        rate = self.cfg.train.inject_nonfinite
        return rate > 0 and random.Random(self.cfg.train.seed * 1_000_003 + step).random() < rate

    HANG_MARK = "injected-hang"

    def _inject_hang(self) -> None:
        """``train.inject_hang_epoch``: the first attempt stops making progress before that epoch, for good
        (a marker in the output folder lets the retry through). Only a watchdog outside the trial ends it."""
        at = self.cfg.train.inject_hang_epoch
        mark = self.out_dir / self.HANG_MARK
        if at is None or self.epoch + 1 != at or mark.exists():
            return
        mark.write_text(f"hung before epoch {at}\n")
        while True:
            time.sleep(3600)

    def build_banks(self) -> None:
        """Fit what the detector fits on the training normals (MASF's banks, PatchCore's bank, PaDiM's
        Gaussians). They depend only on the frozen teacher, so they are built once (see MASF-SPEC.md notes)."""
        stats: dict[int, dict[str, float]] = {}
        for m in self.members:  # banks that members share are fitted once
            owner = _fit_owner(m.model)
            if not m.model.fitted:  # (a detector with nothing to fit, MASF without banks, is fitted)
                m.model.to(self.device).eval()
                images = (b["image"].to(self.device) for b in self.bank_loader)  # training normals only, never validation
                start = time.perf_counter()
                stats[owner] = dict(m.model.fit(images))
                stats[owner]["bank_seconds"] = round(time.perf_counter() - start, 3)  # teacher pass, coreset, index
            if owner in stats:
                m.bank_stats.clear()
                m.bank_stats.update(stats[owner])
        self.bank_built = True

    @torch.no_grad()
    def prepare_scoring(self, model: Optional[torch.nn.Module] = None, recalibrate: bool = True) -> dict[str, float]:
        """What the detector sets up before it scores (MASF: BatchNorm recalibration, quantile calibration).
        ``recalibrate`` False: the (shared) student's BatchNorm statistics were recomputed already."""
        model = model or self.model
        prepare = getattr(model, "prepare_scoring", None)
        if prepare is None:
            return {}
        images = lambda loader: (b["image"].to(self.device) for b in loader)  # noqa: E731
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return prepare(lambda: images(self.bank_loader),
                           lambda: images(self.calibration_loader) if self.calibration_loader is not None else iter(()),
                           recalibrate=recalibrate)

    @torch.no_grad()
    def evaluate(self, ttsa: Optional[bool] = None, loader: Optional[DataLoader] = None, student_only: bool = False,
                 model: Optional[torch.nn.Module] = None) -> Evaluation:
        """Score one split (default: test) and compute its metrics; ``student_only``: the student's maps alone."""
        kwargs = {"student_only": True, "ttsa": False} if student_only else {"ttsa": ttsa}
        keep = self.heatmap_rows if loader is None and ttsa is None and not student_only else ()  # the configured scoring
        return score_split(model or self.model, loader or self.test_loader, self.device, self.amp,
                           self.cfg.eval.pro_fpr_limit, keep=keep, fpr_limit_strict=self.cfg.eval.pro_fpr_limit_strict, **kwargs)

    def _types_of(self, ev: Evaluation) -> Optional[list[str]]:
        """The defect type of each image of a test evaluation (None when the test set does not say)."""
        return self.test_types if self.test_types is not None and len(self.test_types) == len(ev.labels) else None

    def evaluate_members(self, test: bool = True, prepare: bool = True,
                         members: Optional[list[Member]] = None) -> dict[Optional[str], tuple[Optional[Evaluation], dict[str, float]]]:
        """:meth:`evaluate_splits` of every member (or of ``members``). In a group the members share one memo of
        component maps (masf/method/model.py): what two members compute alike (the student's cosine maps of the
        same views, the bank's maps) is computed once and fused per member."""
        memo: Optional[dict] = {} if self.grouped else None
        out, recalibrated = {}, False
        for m in members if members is not None else self.members:
            if hasattr(m.model, "memo"):
                m.model.memo = memo
            try:
                out[m.name] = self.evaluate_splits(m.model, recalibrate=not recalibrated, test=test, prepare=prepare)
            finally:
                if hasattr(m.model, "memo"):
                    m.model.memo = None
            recalibrated = recalibrated or bool(getattr(m.model, "has_student", False))
        return out

    def evaluate_splits(self, model: Optional[torch.nn.Module] = None, recalibrate: bool = True, test: bool = True,
                        prepare: bool = True) -> tuple[Optional[Evaluation], dict[str, float]]:
        """The test evaluation and one flat record: test metrics, ``val/`` metrics, both composites, and with
        a student its maps alone under ``student_only/`` (no TTSA, the same fusion over scales).
        ``test`` False: validation only (no test evaluation, None); ``prepare`` False: the detector's scoring
        state is set already (a copy of an earlier epoch's, masf/trial/deferred.py)."""
        model = model or self.model
        weights = self.cfg.eval.composite_weights
        record: dict[str, float] = self.prepare_scoring(model, recalibrate=recalibrate) if prepare else {}
        tested = self.evaluate(model=model) if test else None
        if tested is not None:
            record.update(tested.metrics)
            types = self._types_of(tested)
            if types is not None:  # defect/<type>/<metric>
                record.update(defect_type_metrics(tested.image_scores, tested.labels, tested.maps, tested.masks, types,
                                                  self.cfg.eval.pro_fpr_limit))
        if getattr(model, "has_student", False):
            if tested is not None:
                alone = self.evaluate(student_only=True, model=model)
                record.update({f"student_only/{k}": v for k, v in alone.metrics.items()})
            if self.val_loader is not None:
                alone = self.evaluate(loader=self.val_loader, student_only=True, model=model)
                record.update({f"val/student_only/{k}": v for k, v in alone.metrics.items()})
        if tested is not None:
            record["composite"] = composite(tested.metrics, weights)
            record["eval_seconds"] = tested.seconds
        if self.val_loader is None:
            record.update(dict.fromkeys(VAL_THRESHOLD_METRICS, float("nan")))
            return tested, record
        val = self.evaluate(loader=self.val_loader, model=model)
        if tested is not None:  # thresholds fixed on validation, then applied to test
            record.update(val_threshold_metrics(tested, val))
        record.update({f"val/{k}": v for k, v in val.metrics.items()})
        record["val/composite"] = composite(val.metrics, weights)
        record["val_eval_seconds"] = val.seconds
        return tested, record

    # ------------------------------------------------------------ loop

    def _append(self, record: dict[str, Any], evaluated: dict[Optional[str], tuple[Evaluation, dict[str, float]]]) -> None:
        """One epoch's training record into the training history and, with its metrics, every member's."""
        if self.grouped:
            self.train_history.append(record)
        for m in self.members:
            m.history.append({**record, **evaluated[m.name][1]} if m.name in evaluated else dict(record))

    def _report(self, final: bool = False) -> dict[str, Any]:
        """What ``on_epoch`` hears: the (first) member's record; a group adds each member's under ``members``."""
        report = dict(self.history[-1])
        if self.grouped:
            report["members"] = {m.name: dict(m.history[-1]) for m in self.members}
        if final:
            report["final"] = True
        return report

    def fit(self, resume: bool = True) -> TrainOutcome:
        """Train, evaluate every member, return the (first) member's outcome; all of them are in ``self.outcomes``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self.out_dir / CHECKPOINT
        if resume and ckpt.exists():
            self.load_checkpoint(ckpt)
        epochs = self.cfg.train.epochs if self.model.trains else 0
        train_start = time.perf_counter()
        spent_before = sum(h.get("epoch_seconds", 0.0) for h in self.train_history)
        while self.epoch < epochs:
            self._inject_hang()
            t0 = time.perf_counter()
            record = self.train_epoch()
            self.epoch += 1
            record["epoch"] = self.epoch
            if self.epoch >= self.cfg.train.bank_first_epoch:
                self.build_banks()
            record["epoch_seconds"] = time.perf_counter() - t0
            evaluated = {}
            if self.epoch < epochs and self.epoch % self.cfg.eval.every == 0 and self.bank_built:
                if self.test_every or self.val_loader is not None:  # (selected, no validation split: nothing to select)
                    evaluated = self.evaluate_members(test=self.test_every)
                self._keep_statistics(evaluated)
            self._append(record, evaluated)
            if evaluated and not self.test_every:
                self.deferred.remember(self.epoch, self.members)
            self.save_checkpoint()
            if self.on_epoch and self.epoch < epochs:  # the last epoch is reported with the final metrics
                self.on_epoch(self._report())
        train_seconds = spent_before + (time.perf_counter() - train_start)
        skipped = sum(int(h["skipped_batches"]) for h in self.train_history)
        skipped_steps = sum(int(h.get("skipped_steps", 0)) for h in self.train_history)
        total = sum(int(h["batches"]) for h in self.train_history)
        if self.model.trains and total and skipped + skipped_steps == total:
            raise TrainingError(f"every one of the {total} training batches had a non-finite loss or gradient "
                                f"({skipped} losses, {skipped_steps} gradients); no metrics of an untrained model are reported")
        self.build_banks()  # the end-of-training build (a no-op when already built)
        finals = self.evaluate_members()
        self._keep_statistics(finals)
        if not (self.train_history and self.train_history[-1]["epoch"] == self.epoch):
            self._append({"epoch": self.epoch, "skipped_batches": 0, "skipped_steps": 0, "batches": 0}, {})
        for m in self.members:
            m.history[-1].update({"epoch": self.epoch, **finals[m.name][1]})
        self._score_deferred()
        if self.on_epoch:
            self.on_epoch(self._report(final=True))
        totals = dict(skipped_batches=skipped, total_batches=total, skipped_steps=skipped_steps, train_seconds=train_seconds,
                      optimizer_steps=total - skipped - skipped_steps if self.model.trains else 0)
        self.outcomes = {m.name: self._outcome(m, *finals[m.name], totals) for m in self.members}
        return self.outcomes[self.members[0].name]

    def _score_deferred(self) -> None:
        """eval.test_split=selected: the test split of each best-on-validation epoch that is not the last, scored
        from that epoch's copy of the scoring state (masf/trial/deferred.py); the final state is put back."""
        final = None
        for epoch in self.deferred.pending(self.members, self.epoch):
            final = final or {m.name: scoring_state(m.model) for m in self.members}
            needing = [m for m in self.members if self.deferred.best(m) == epoch]
            self.deferred.load(epoch, self.members)
            evaluated = self.evaluate_members(prepare=False, members=needing)
            self._keep_statistics(evaluated, epoch)
            for m in needing:
                next(h for h in m.history if h.get("epoch") == epoch).update(evaluated[m.name][1])
        for m in self.members if final else ():
            m.model.load_state_dict(final[m.name], strict=False)

    def _keep_statistics(self, evaluated: dict[Optional[str], tuple[Optional[Evaluation], dict[str, float]]],
                         epoch: Optional[int] = None) -> None:
        """Each member's per-image record of an epoch's test scoring (masf/records.py), for paired intervals."""
        test_set = self.test_loader.dataset
        root = getattr(test_set, "root", ".")
        names = [os.path.relpath(s.image_path, root) for s in getattr(test_set, "samples", [])]
        for m in self.members:
            if m.name in evaluated and evaluated[m.name][0] is not None:
                ev = evaluated[m.name][0]
                m.test_stats[epoch or self.epoch] = test_statistics(
                    ev.image_scores, ev.labels, ev.maps, ev.masks, self.cfg.eval.pro_fpr_limit,
                    images=names if len(names) == len(ev.labels) else None,
                    fpr_limit_strict=self.cfg.eval.pro_fpr_limit_strict, defect_types=self._types_of(ev))

    def _outcome(self, m: Member, final: Evaluation, final_record: dict[str, float], totals: dict[str, Any]) -> TrainOutcome:
        best = select_epoch(m.history, "composite") if self.test_every else None  # (selected: not every epoch has test)
        by_val = select_epoch(m.history, "val/composite")
        picked = {"last": self.epoch, "best_on_test": int(best["epoch"]) if best else None,
                  "best_on_val": int(by_val["epoch"]) if by_val else None}
        nan = float("nan")
        return TrainOutcome(
            history=m.history,
            test_stats={sel: m.test_stats[e] for sel, e in picked.items() if e in m.test_stats},
            trainable_parameters=sum(p.numel() for p in m.model.trainable_parameters()) if hasattr(m.model, "trainable_parameters") else 0,
            last={k: final_record[k] for k in SELECTION_METRICS},
            best_on_test={k: float(best.get(k, nan)) for k in SELECTION_METRICS} if best else {},
            best_epoch=int(best["epoch"]) if best else None,
            final=final,
            bank_stats=m.bank_stats,
            best_on_val={k: float(by_val.get(k, nan)) for k in SELECTION_METRICS} if by_val else {},
            best_val_epoch=int(by_val["epoch"]) if by_val else None,
            val_last={k: final_record[f"val/{k}"] for k in METRIC_KEYS} if by_val else {},
            resumed_code=self.resumed_code,
            student_only={k: float(v) for k, v in final_record.items() if k.startswith(("student_only/", "val/student_only/"))},
            selection_extras=selection_extras({"last": final_record, "best_on_val": by_val}),
            calibration_shared=self.calibration_shared,
            **totals,
        )
