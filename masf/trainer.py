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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from masf.config import Config
from masf.errors import MasfError, TrainingError
from masf.fingerprint import trial_identity
from masf.metrics import METRIC_KEYS as SPLIT_METRICS
from masf.metrics import VAL_THRESHOLD_METRICS, compute_metrics, f1_at, f1_threshold

CHECKPOINT = "checkpoint.pt"
METRIC_KEYS = SPLIT_METRICS + VAL_THRESHOLD_METRICS  # the test metrics each selection reports

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    image_scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) fused anomaly maps
    masks: np.ndarray  # (N, H, W) uint8
    seconds: float


@dataclass
class TrainOutcome:
    history: list[dict[str, Any]]
    last: dict[str, float]  # test metrics of the final epoch
    best_on_test: dict[str, float]
    best_epoch: int  # the epoch best_on_test chose
    final: Evaluation  # the final epoch on the test split
    skipped_batches: int
    total_batches: int
    train_seconds: float
    bank_stats: dict[str, float] = field(default_factory=dict)
    best_on_val: dict[str, float] = field(default_factory=dict)  # empty without a validation split
    best_val_epoch: Optional[int] = None
    val_last: dict[str, float] = field(default_factory=dict)  # validation metrics of the final epoch
    skipped_steps: int = 0  # optimiser steps skipped for a non-finite gradient (finite loss)
    resumed_code: Optional[str] = None  # code fingerprint of a checkpoint resumed across a code change
    # the final epoch's student maps alone (no TTSA): test metrics, and validation metrics (val/ keys)
    student_only: dict[str, float] = field(default_factory=dict)
    optimizer_steps: int = 0  # steps the optimiser took (batches less skipped batches and skipped steps)
    calibration_shared: bool = False  # the selecting validation normals also calibrated (too few to split)


class CheckpointMismatch(MasfError):
    """A checkpoint in the output folder belongs to another configuration."""


def composite(metrics: dict[str, float], weights: list[float], prefix: str = "") -> float:
    """The paper's selection score: w0 image AUROC + w1 pixel AUROC + w2 PRO."""
    m = lambda k: metrics[prefix + k]  # noqa: E731
    return weights[0] * m("image_auroc") + weights[1] * m("pixel_auroc") + weights[2] * m("pro")


def select_epoch(history: list[dict[str, Any]], key: str) -> Optional[dict[str, Any]]:
    """The evaluated epoch record with the highest ``key`` (the earliest on ties); None when none has it."""
    scored = [h for h in history if np.isfinite(h.get(key, float("nan")))]
    return max(scored, key=lambda h: h[key]) if scored else None


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
    ):
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
        self.val_loader = (
            DataLoader(val_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
            if val_set is not None and len(val_set) else None
        )
        if calibration_set is None:  # a validation split carries its calibration normals
            calibration_set = getattr(val_set, "calibration", None)
        self.calibration_shared = False  # calibrating on the normals that also select
        if getattr(model, "calibrates", False) and not (calibration_set is not None and len(calibration_set)):
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
        self.identity = trial_identity(cfg)
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
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.bank_built = False
        self.bank_stats: dict[str, float] = {}

    # ------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        model_state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("teacher.")}
        return {
            "fingerprint": self.identity,
            "epoch": self.epoch,
            "model": model_state,
            "fitted": self.model.fitted_state() if self.bank_built else {},
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
            "history": self.history,
        }

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
        if self.bank_built:
            self.model.load_fitted_state(state["fitted"])
        self.bank_stats = dict(state["bank_stats"])
        if self.optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.loader_gen.set_state(state["rng"]["loader"])
        self.mask_gen.set_state(state["rng"]["mask"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])

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
        if self.bank_built or self.model.fitted:  # nothing to fit (MASF without banks), or done
            self.bank_built = True
            return
        self.model.eval()
        images = (b["image"].to(self.device) for b in self.bank_loader)  # training normals only, never validation
        start = time.perf_counter()
        self.bank_stats = self.model.fit(images)
        self.bank_stats["bank_seconds"] = round(time.perf_counter() - start, 3)  # teacher pass, coreset, index
        self.bank_built = True

    @torch.no_grad()
    def prepare_scoring(self) -> dict[str, float]:
        """What the detector sets up before it scores (MASF: BatchNorm recalibration, quantile calibration)."""
        prepare = getattr(self.model, "prepare_scoring", None)
        if prepare is None:
            return {}
        images = lambda loader: (b["image"].to(self.device) for b in loader)  # noqa: E731
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return prepare(lambda: images(self.bank_loader),
                           lambda: images(self.calibration_loader) if self.calibration_loader is not None else iter(()))

    @torch.no_grad()
    def evaluate(self, ttsa: Optional[bool] = None, loader: Optional[DataLoader] = None, student_only: bool = False) -> Evaluation:
        """Score one split (default: test) and compute its metrics; ``student_only``: the student's maps alone."""
        self.model.eval()
        scores, labels, maps, masks = [], [], [], []
        start = time.perf_counter()
        kwargs = {"student_only": True, "ttsa": False} if student_only else {"ttsa": ttsa}
        for batch in loader or self.test_loader:
            x = batch["image"].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                out = self.model.score(x, **kwargs)
            scores.append(out.image_score.float().cpu().numpy())
            maps.append(out.anomaly_map.float().cpu().numpy())
            labels.append(np.asarray(batch["label"]))
            masks.append(batch["mask"][:, 0].numpy().astype(np.uint8))
        seconds = time.perf_counter() - start
        s, y, m, g = np.concatenate(scores), np.concatenate(labels), np.concatenate(maps), np.concatenate(masks)
        metrics = compute_metrics(s, y, m, g, fpr_limit=self.cfg.eval.pro_fpr_limit)
        return Evaluation(metrics, s, y, m, g, seconds)

    def evaluate_splits(self) -> tuple[Evaluation, dict[str, float]]:
        """The test evaluation and one flat record: test metrics, ``val/`` metrics, both composites, and with
        a student its maps alone under ``student_only/`` (no TTSA, the same fusion over scales)."""
        weights = self.cfg.eval.composite_weights
        record: dict[str, float] = self.prepare_scoring()
        test = self.evaluate()
        record.update(test.metrics)
        if getattr(self.model, "has_student", False):
            alone = self.evaluate(student_only=True)
            record.update({f"student_only/{k}": v for k, v in alone.metrics.items()})
            if self.val_loader is not None:
                alone = self.evaluate(loader=self.val_loader, student_only=True)
                record.update({f"val/student_only/{k}": v for k, v in alone.metrics.items()})
        record["composite"] = composite(test.metrics, weights)
        record["eval_seconds"] = test.seconds
        if self.val_loader is None:
            record.update(dict.fromkeys(VAL_THRESHOLD_METRICS, float("nan")))
            return test, record
        val = self.evaluate(loader=self.val_loader)
        # thresholds fixed on validation, then applied to test
        record["image_f1_at_val_threshold"] = f1_at(test.image_scores, test.labels, f1_threshold(val.image_scores, val.labels))
        record["pixel_f1_at_val_threshold"] = f1_at(test.maps, test.masks, f1_threshold(val.maps, val.masks))
        record.update({f"val/{k}": v for k, v in val.metrics.items()})
        record["val/composite"] = composite(val.metrics, weights)
        record["val_eval_seconds"] = val.seconds
        return test, record

    # ------------------------------------------------------------ loop

    def fit(self, resume: bool = True) -> TrainOutcome:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self.out_dir / CHECKPOINT
        if resume and ckpt.exists():
            self.load_checkpoint(ckpt)
        epochs = self.cfg.train.epochs if self.model.trains else 0
        train_start = time.perf_counter()
        spent_before = sum(h.get("epoch_seconds", 0.0) for h in self.history)
        while self.epoch < epochs:
            self._inject_hang()
            t0 = time.perf_counter()
            record = self.train_epoch()
            self.epoch += 1
            record["epoch"] = self.epoch
            if self.epoch >= self.cfg.train.bank_first_epoch:
                self.build_banks()
            record["epoch_seconds"] = time.perf_counter() - t0
            if self.epoch < epochs and self.epoch % self.cfg.eval.every == 0 and self.bank_built:
                record.update(self.evaluate_splits()[1])
            self.history.append(record)
            self.save_checkpoint()
            if self.on_epoch and self.epoch < epochs:  # the last epoch is reported with the final metrics
                self.on_epoch(dict(record))
        train_seconds = spent_before + (time.perf_counter() - train_start)
        skipped = sum(int(h["skipped_batches"]) for h in self.history)
        skipped_steps = sum(int(h.get("skipped_steps", 0)) for h in self.history)
        total = sum(int(h["batches"]) for h in self.history)
        if self.model.trains and total and skipped + skipped_steps == total:
            raise TrainingError(f"every one of the {total} training batches had a non-finite loss or gradient "
                                f"({skipped} losses, {skipped_steps} gradients); no metrics of an untrained model are reported")
        self.build_banks()  # the end-of-training build (a no-op when already built)
        final, final_record = self.evaluate_splits()
        last_record = {"epoch": self.epoch, **final_record}
        if self.history and self.history[-1]["epoch"] == self.epoch:
            self.history[-1].update(last_record)
        else:
            self.history.append({**last_record, "skipped_batches": 0, "skipped_steps": 0, "batches": 0})
        if self.on_epoch:
            self.on_epoch(dict(self.history[-1], final=True))
        best = select_epoch(self.history, "composite")
        by_val = select_epoch(self.history, "val/composite")
        return TrainOutcome(
            history=self.history,
            last={k: final_record[k] for k in METRIC_KEYS},
            best_on_test={k: float(best[k]) for k in METRIC_KEYS},
            best_epoch=int(best["epoch"]),
            final=final,
            skipped_batches=skipped,
            total_batches=total,
            train_seconds=train_seconds,
            bank_stats=self.bank_stats,
            best_on_val={k: float(by_val[k]) for k in METRIC_KEYS} if by_val else {},
            best_val_epoch=int(by_val["epoch"]) if by_val else None,
            val_last={k: final_record[f"val/{k}"] for k in SPLIT_METRICS} if by_val else {},
            skipped_steps=skipped_steps,
            resumed_code=self.resumed_code,
            student_only={k: float(v) for k, v in final_record.items() if k.startswith(("student_only/", "val/student_only/"))},
            optimizer_steps=total - skipped - skipped_steps if self.model.trains else 0,
            calibration_shared=self.calibration_shared,
        )
