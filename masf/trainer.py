"""The MASF trainer: AdamW, warm-up + cosine restarts, AMP on CUDA, skipped-batch
accounting, bank schedule, periodic evaluation and resumable checkpoints.

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
from masf.method.model import MASF
from masf.metrics import compute_metrics

CHECKPOINT = "checkpoint.pt"
METRIC_KEYS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro")

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
    last: dict[str, float]
    best_on_test: dict[str, float]
    best_epoch: int
    final: Evaluation
    skipped_batches: int
    total_batches: int
    train_seconds: float
    bank_stats: dict[str, float] = field(default_factory=dict)


def composite(metrics: dict[str, float], weights: list[float]) -> float:
    """The paper's selection score: w0 image AUROC + w1 pixel AUROC + w2 PRO."""
    return weights[0] * metrics["image_auroc"] + weights[1] * metrics["pixel_auroc"] + weights[2] * metrics["pro"]


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
        model: MASF,
        train_set: Dataset,
        test_set: Dataset,
        out_dir: Path,
        on_epoch: Optional[EpochCallback] = None,
        on_batch: Optional[Callable[[int, int], None]] = None,
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
        self.steps_per_epoch = max(1, len(self.train_loader))
        params = model.trainable_parameters()
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay) if params else None
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
            "epoch": self.epoch,
            "model": model_state,
            "banks": [b.bank.state() for b in self.model.banks] if self.model.banks is not None else [],
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

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise MasfError(f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        if self.model.banks is not None:
            for bank, bstate in zip(self.model.banks, state["banks"]):
                bank.bank.load_state(bstate)
        self.bank_built = bool(state["bank_built"])
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

    def train_epoch(self) -> dict[str, Any]:
        self.model.train()
        losses, per_scale, skipped, batches = [], [], 0, 0
        for batch in self.train_loader:
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
                with warnings.catch_warnings():  # the schedule keeps counting steps, also skipped ones
                    warnings.simplefilter("ignore", UserWarning)
                    self.scheduler.step()
                continue
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            losses.append(float(loss.detach()))
            per_scale.append([float(p.detach()) for p in parts])
            if self.on_batch:
                self.on_batch(batches, self.steps_per_epoch)
        record: dict[str, Any] = {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "skipped_batches": skipped,
            "batches": batches,
        }
        if per_scale:
            for i, v in enumerate(np.mean(per_scale, axis=0)):
                record[f"loss/scale{i}"] = float(v)
        for i, w in enumerate(self.model.ughf.weights().tolist()):
            record[f"fusion_weight/scale{i}"] = w
        return record

    def _inject_fault(self, step: int) -> bool:
        rate = self.cfg.train.inject_nonfinite
        return rate > 0 and random.Random(self.cfg.train.seed * 1_000_003 + step).random() < rate

    def build_banks(self) -> None:
        """Fit the banks. They depend only on the frozen teacher and the fixed anchors, so a
        rebuild after the first gives the same bank; it is skipped then (see MASF-SPEC.md notes)."""
        if self.model.banks is None or self.bank_built:
            return
        self.model.eval()
        images = (b["image"].to(self.device) for b in self.bank_loader)
        start = time.perf_counter()
        self.bank_stats = self.model.build_banks(images)
        self.bank_stats["bank_seconds"] = round(time.perf_counter() - start, 3)  # teacher pass, coreset, index
        self.bank_built = True

    @torch.no_grad()
    def evaluate(self, ttsa: Optional[bool] = None) -> Evaluation:
        self.model.eval()
        scores, labels, maps, masks = [], [], [], []
        start = time.perf_counter()
        for batch in self.test_loader:
            x = batch["image"].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                out = self.model.score(x, ttsa=ttsa)
            scores.append(out.image_score.float().cpu().numpy())
            maps.append(out.anomaly_map.float().cpu().numpy())
            labels.append(np.asarray(batch["label"]))
            masks.append(batch["mask"][:, 0].numpy().astype(np.uint8))
        seconds = time.perf_counter() - start
        s, y, m, g = np.concatenate(scores), np.concatenate(labels), np.concatenate(maps), np.concatenate(masks)
        metrics = compute_metrics(s, y, m, g, fpr_limit=self.cfg.eval.pro_fpr_limit)
        return Evaluation(metrics, s, y, m, g, seconds)

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
            t0 = time.perf_counter()
            record = self.train_epoch()
            self.epoch += 1
            record["epoch"] = self.epoch
            if self.epoch >= self.cfg.train.bank_first_epoch:
                self.build_banks()
            record["epoch_seconds"] = time.perf_counter() - t0
            ready = self.model.banks is None or self.bank_built
            if self.epoch < epochs and self.epoch % self.cfg.eval.every == 0 and ready:
                ev = self.evaluate()
                record.update(ev.metrics)
                record["composite"] = composite(ev.metrics, self.cfg.eval.composite_weights)
                record["eval_seconds"] = ev.seconds
            self.history.append(record)
            self.save_checkpoint()
            if self.on_epoch and self.epoch < epochs:  # the last epoch is reported with the final metrics
                self.on_epoch(dict(record))
        train_seconds = spent_before + (time.perf_counter() - train_start)
        skipped = sum(int(h["skipped_batches"]) for h in self.history)
        total = sum(int(h["batches"]) for h in self.history)
        if self.model.trains and total and skipped == total:
            raise TrainingError(f"every one of the {total} training batches had a non-finite loss; no metrics of an untrained model are reported")
        self.build_banks()  # the end-of-training build (a no-op when already built)
        final = self.evaluate()
        last_record = {"epoch": self.epoch, **final.metrics, "composite": composite(final.metrics, self.cfg.eval.composite_weights)}
        if self.history and self.history[-1]["epoch"] == self.epoch:
            self.history[-1].update(last_record)
        else:
            self.history.append({**last_record, "skipped_batches": 0, "batches": 0})
        if self.on_epoch:
            self.on_epoch(dict(self.history[-1], final=True))
        evaluated = [h for h in self.history if "composite" in h]
        best = max(evaluated, key=lambda h: h["composite"])
        return TrainOutcome(
            history=self.history,
            last={k: final.metrics[k] for k in METRIC_KEYS},
            best_on_test={k: float(best[k]) for k in METRIC_KEYS},
            best_epoch=int(best["epoch"]),
            final=final,
            skipped_batches=skipped,
            total_batches=total,
            train_seconds=train_seconds,
            bank_stats=self.bank_stats,
        )
