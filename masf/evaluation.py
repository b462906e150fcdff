"""Scoring one split and choosing among evaluated epochs: the evaluation's record, the paper's
composite, the epoch selection. Used by the trainer for every member it scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np
import torch

from masf.metrics import compute_metrics


@dataclass
class Evaluation:
    metrics: dict[str, float]
    image_scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) fused anomaly maps
    masks: np.ndarray  # (N, H, W) uint8
    seconds: float


def composite(metrics: dict[str, float], weights: list[float], prefix: str = "") -> float:
    """The paper's selection score: w0 image AUROC + w1 pixel AUROC + w2 PRO."""
    m = lambda k: metrics[prefix + k]  # noqa: E731
    return weights[0] * m("image_auroc") + weights[1] * m("pixel_auroc") + weights[2] * m("pro")


def select_epoch(history: list[dict[str, Any]], key: str) -> Optional[dict[str, Any]]:
    """The evaluated epoch record with the highest ``key`` (the earliest on ties); None when none has it."""
    scored = [h for h in history if np.isfinite(h.get(key, float("nan")))]
    return max(scored, key=lambda h: h[key]) if scored else None


@torch.no_grad()
def score_split(model: torch.nn.Module, loader: Iterable[dict[str, Any]], device: torch.device, amp: bool,
                fpr_limit: float, **score_kwargs: Any) -> Evaluation:
    """``model.score`` over every batch of ``loader`` (float16 autocast when ``amp``), and the split's metrics."""
    model.eval()
    scores, labels, maps, masks = [], [], [], []
    start = time.perf_counter()
    for batch in loader:
        x = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model.score(x, **score_kwargs)
        scores.append(out.image_score.float().cpu().numpy())
        maps.append(out.anomaly_map.float().cpu().numpy())
        labels.append(np.asarray(batch["label"]))
        masks.append(batch["mask"][:, 0].numpy().astype(np.uint8))
    seconds = time.perf_counter() - start
    s, y, m, g = np.concatenate(scores), np.concatenate(labels), np.concatenate(maps), np.concatenate(masks)
    return Evaluation(compute_metrics(s, y, m, g, fpr_limit=fpr_limit), s, y, m, g, seconds)
