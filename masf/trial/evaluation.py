"""Scoring one split and choosing among evaluated epochs: the evaluation's record, the paper's
composite, the epoch selection. Used by the trainer for every member it scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from masf.metrics import PRO_FPR_LIMIT_STRICT, compute_metrics, f1_at, f1_threshold, normal_threshold


@dataclass
class Evaluation:
    metrics: dict[str, float]
    image_scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) fused anomaly maps
    masks: np.ndarray  # (N, H, W) uint8
    seconds: float
    kept: tuple[int, ...] = ()  # the images whose per-scale maps were kept (the heatmap figure's rows)
    scale_maps: Optional[list[np.ndarray]] = None  # L x (len(kept), H, W): their per-scale s_l


def heatmap_indices(labels: np.ndarray, defect_types: list[str], n: int) -> tuple[int, ...]:
    """Up to n test images for the heatmap figure: one per defect type first, then more defects, one good image last."""
    if n <= 0:
        return ()
    chosen: list[int] = []
    for kind in dict.fromkeys(t for t in defect_types if t != "good"):
        chosen.append(defect_types.index(kind))
    rest = [int(i) for i in np.flatnonzero(labels == 1) if i not in chosen]
    chosen = (chosen + rest)[: max(1, n - 1)]
    goods = np.flatnonzero(labels == 0)
    if len(goods):
        chosen.append(int(goods[0]))
    return tuple(chosen[:n])


def val_threshold_metrics(tested: Evaluation, val: Evaluation) -> dict[str, float]:
    """The test split's F1 at thresholds fixed on the validation split (``masf.metrics.VAL_THRESHOLD_METRICS``):
    image and pixel F1 at the thresholds that give the best F1 on the whole validation split, and SegF1,
    the pixel F1 at mean + 3 std of the pixel scores of its normal images (label 0; not their
    pseudo-anomalous copies), with that threshold as ``pixel_normal_threshold``; NaN without a normal image."""
    out = {"image_f1_at_val_threshold": f1_at(tested.image_scores, tested.labels, f1_threshold(val.image_scores, val.labels)),
           "pixel_f1_at_val_threshold": f1_at(tested.maps, tested.masks, f1_threshold(val.maps, val.masks))}
    normals = val.maps[val.labels == 0]  # (N_normal, H, W)
    if not len(normals):
        return {**out, "pixel_f1_at_normal_threshold": float("nan"), "pixel_normal_threshold": float("nan")}
    threshold = normal_threshold(normals)
    return {**out, "pixel_f1_at_normal_threshold": f1_at(tested.maps, tested.masks, threshold), "pixel_normal_threshold": threshold}


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
                fpr_limit: float, keep: Sequence[int] = (), fpr_limit_strict: float = PRO_FPR_LIMIT_STRICT,
                **score_kwargs: Any) -> Evaluation:
    """``model.score`` over every batch of ``loader`` (float16 autocast when ``amp``), and the split's metrics
    (PRO at ``fpr_limit`` and at ``fpr_limit_strict``).
    ``keep``: positions in the split whose per-scale maps the Evaluation keeps (the heatmap figure needs no second scoring)."""
    model.eval()
    scores, labels, maps, masks = [], [], [], []
    wanted, kept = set(keep), {}
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        x = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model.score(x, **score_kwargs)
        scores.append(out.image_score.float().cpu().numpy())
        maps.append(out.anomaly_map.float().cpu().numpy())
        labels.append(np.asarray(batch["label"]))
        masks.append(batch["mask"][:, 0].numpy().astype(np.uint8))
        for i in wanted.intersection(range(seen, seen + x.shape[0])):
            kept[i] = [m[i - seen].float().cpu().numpy() for m in out.scale_maps]
        seen += x.shape[0]
    seconds = time.perf_counter() - start
    s, y, m, g = np.concatenate(scores), np.concatenate(labels), np.concatenate(maps), np.concatenate(masks)
    order = tuple(i for i in keep if i in kept)
    scale_maps = [np.stack([kept[i][level] for i in order]) for level in range(len(kept[order[0]]))] if order else None
    metrics = compute_metrics(s, y, m, g, fpr_limit=fpr_limit, fpr_limit_strict=fpr_limit_strict)
    return Evaluation(metrics, s, y, m, g, seconds, order, scale_maps)
