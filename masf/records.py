"""Per-image test records: what a trial keeps of its test scoring, and every metric recomputed from it.

A trial keeps, for each epoch selection, a compact record of its test split (``test_statistics``):
every image's score, label and defect type (``defect_type``, the test folder's name; records written
before it existed lack it), per-image histograms of its defect and defect-free pixel scores over
one set of bins, one histogram per ground-truth region, per-image counts at ADer's IoU-max
thresholds, and the two PRO limits. Every metric of ``METRIC_KEYS`` can be recomputed from the record
for any weighting of the test images (``metrics_from_statistics``): exactly for the image metrics, and
with pixel scores resolved to the bins for the pixel metrics. The intervals built on them (a paired bootstrap over test
images, t intervals over seeds) are ``masf.report.intervals``.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from masf.errors import MasfError
from masf.layout import STATS_FILE  # noqa: F401 - where a trial keeps its records
from masf.metrics import (IOU_THRESHOLDS, MAD_TERMS, PRO_FPR_LIMIT, PRO_FPR_LIMIT_STRICT, _REGION_STRUCTURE,
                          _check_limit, _maps_and_masks, _scores, normalized_maps)

BINS = 512  # pixel-score bins of a record (``_edges``)


class StatsError(MasfError):
    """Two records cannot be paired, or a record is malformed."""


def _edges(maps: np.ndarray, defect: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges: a quarter at even quantiles of all pixels, a quarter at quantiles dense toward the top (the
    low-FPR end, where F1-max, AP and PRO are decided: 1 - 10^0 ... 1 - 10^-6), half at even quantiles of the
    defect pixels."""
    levels = np.unique(np.concatenate((np.linspace(0.0, 1.0, bins // 4 + 1), 1.0 - np.logspace(0.0, -6.0, bins // 4))))
    inner = np.concatenate((np.quantile(maps, levels), np.quantile(maps[defect], np.linspace(0.0, 1.0, bins // 2 + 1))))
    return np.unique(inner)  # ascending; bin b holds scores in [edges[b], edges[b + 1]), the last bin is closed


def test_statistics(image_scores, image_labels, anomaly_maps, masks, fpr_limit: float = PRO_FPR_LIMIT, bins: int = BINS,
                    images: Optional[Sequence[str]] = None, fpr_limit_strict: float = PRO_FPR_LIMIT_STRICT,
                    defect_types: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """The per-image record of one scored split (module docstring); ``images`` names the images for pairing,
    ``defect_types`` gives each image's defect type (the field ``defect_type``, left out when not given)."""
    limit, strict = _check_limit(fpr_limit), _check_limit(fpr_limit_strict)
    scores = _scores(image_scores, "image_scores", 1).astype(np.float64)
    labels = np.asarray(image_labels).astype(bool)
    maps, defect = _maps_and_masks(anomaly_maps, masks)
    n = maps.shape[0]
    edges = _edges(maps, defect, bins)
    n_bins = max(1, edges.size - 1)
    idx = np.clip(np.searchsorted(edges, maps, side="right") - 1, 0, n_bins - 1)  # (N, H, W) bin of each pixel
    image_of = np.broadcast_to(np.arange(n)[:, None, None], maps.shape)
    flat = image_of * n_bins + idx
    pos = np.bincount(flat[defect], minlength=n * n_bins).reshape(n, n_bins)
    neg = np.bincount(flat[~defect], minlength=n * n_bins).reshape(n, n_bins)
    regions, n_regions = ndimage.label(defect, structure=_REGION_STRUCTURE)
    rid = regions[defect] - 1
    region_hist = np.bincount(rid * n_bins + idx[defect], minlength=n_regions * n_bins).reshape(n_regions, n_bins)
    region_image = np.asarray(ndimage.maximum(image_of, regions, index=np.arange(1, n_regions + 1)), dtype=np.int32).reshape(-1)
    norm = normalized_maps(maps)
    inter = np.zeros((n, IOU_THRESHOLDS.size), dtype=np.int64)
    pred = np.zeros_like(inter)
    for i in range(n):  # positive at t: normalised score > t
        every, inside = np.sort(norm[i].ravel()), np.sort(norm[i][defect[i]])
        pred[i] = every.size - np.searchsorted(every, IOU_THRESHOLDS, side="right")
        inter[i] = inside.size - np.searchsorted(inside, IOU_THRESHOLDS, side="right")
    names = np.asarray(list(images) if images is not None else [str(i) for i in range(n)], dtype=str)
    rec = {
        "score": scores, "label": labels, "edges": edges.astype(np.float64),
        "pos_hist": pos.astype(np.int32), "neg_hist": neg.astype(np.int32),
        "region_hist": region_hist.astype(np.int32), "region_image": region_image,
        "iou_inter": inter.astype(np.int64), "iou_pred": pred.astype(np.int64),
        "gt_pixels": defect.sum(axis=(1, 2)).astype(np.int64), "fpr_limit": np.float64(limit), "images": names,
        "fpr_limit_strict": np.float64(strict),
    }
    if defect_types is not None:
        rec["defect_type"] = np.asarray(list(defect_types), dtype=str)
        if rec["defect_type"].shape != (n,):
            raise StatsError(f"defect_types has {rec['defect_type'].size} entries for {n} images")
    return rec


# ---------------------------------------------------------------- metrics from a record, many weightings at once


def _pr_from_counts(tp: np.ndarray, fp: np.ndarray, total_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AP, F1-max) per row from cumulative counts at descending thresholds (one column per threshold)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = tp / total_pos[:, None]
        prev = np.concatenate((np.zeros((tp.shape[0], 1)), recall[:, :-1]), axis=1)
        ap = np.sum((recall - prev) * precision, axis=1)
        f1 = np.where(tp > 0, 2.0 * tp / (tp + fp + total_pos[:, None]), 0.0)
    return ap, f1.max(axis=1)


def _auroc_from_hist(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC per row from weighted per-bin counts (ascending bins); ties within a bin count one half."""
    below = np.cumsum(neg, axis=1) - neg
    return np.sum(pos * (below + 0.5 * neg), axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _coverage(rec: Mapping[str, np.ndarray]) -> np.ndarray:
    """(R, B): the share of each region's pixels at or above each threshold, from the top bin down."""
    hist = rec["region_hist"].astype(np.float64)
    return np.cumsum(hist[:, ::-1], axis=1) / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)


def _areas_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float) -> np.ndarray:
    """``metrics._area_to_limit`` for every row of (D, K) curves at once (each row's fpr non-decreasing, from 0)."""
    k = (fpr <= limit).sum(axis=1)  # points up to the limit, >= 1 (every curve starts at 0)
    seg = np.diff(fpr, axis=1) * (pro[:, 1:] + pro[:, :-1]) * 0.5  # (D, K - 1)
    whole = np.where(np.arange(seg.shape[1])[None, :] < (k - 1)[:, None], seg, 0.0).sum(axis=1)
    rows = np.arange(fpr.shape[0])
    last = k - 1
    nxt = np.minimum(k, fpr.shape[1] - 1)
    x0, y0, x1, y1 = fpr[rows, last], pro[rows, last], fpr[rows, nxt], pro[rows, nxt]
    cut = k < fpr.shape[1]  # the curve goes past the limit: end it there by interpolation
    with np.errstate(invalid="ignore", divide="ignore"):
        y_lim = y0 + (limit - x0) / (x1 - x0) * (y1 - y0)
    part = np.where(cut, (limit - x0) * (y0 + np.where(cut, y_lim, 0.0)) * 0.5, 0.0)
    return np.clip((whole + part) / limit, 0.0, 1.0)


def metrics_from_statistics(rec: Mapping[str, np.ndarray], weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Every metric of ``METRIC_KEYS`` for each row of ``weights`` ((draws, N) image weights; default: every
    image once), as (draws,) arrays of fractions. A record without ``fpr_limit_strict`` (written before it
    existed) gives ``pro_strict`` at ``PRO_FPR_LIMIT_STRICT``."""
    n = rec["score"].size
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    score, label = rec["score"], rec["label"].astype(bool)
    # image level: exact, ties together
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    wp, wn = w[:, order] * label[order], w[:, order] * ~label[order]
    tp, fp = np.cumsum(wp, axis=1)[:, last_of_tie], np.cumsum(wn, axis=1)[:, last_of_tie]
    image_ap, image_f1 = _pr_from_counts(tp, fp, wp.sum(axis=1))
    pos_s, neg_s = score[label], score[~label]
    beats = (pos_s[:, None] > neg_s[None, :]) + 0.5 * (pos_s[:, None] == neg_s[None, :])  # (P, Q)
    w_pos, w_neg = w[:, label], w[:, ~label]
    image_auroc = np.einsum("dp,pq,dq->d", w_pos, beats, w_neg) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))
    # pixel level from the bins
    pos = w @ rec["pos_hist"].astype(np.float64)  # (D, B)
    neg = w @ rec["neg_hist"].astype(np.float64)
    pixel_auroc = _auroc_from_hist(pos, neg)
    tp_px, fp_px = np.cumsum(pos[:, ::-1], axis=1), np.cumsum(neg[:, ::-1], axis=1)  # at thresholds from the top bin down
    pixel_ap, pixel_f1 = _pr_from_counts(tp_px, fp_px, pos.sum(axis=1))
    # PRO: each region's covered share at each threshold, averaged over regions with their image's weight
    cover = _coverage(rec)
    w_reg = w[:, rec["region_image"]]  # (D, R)
    pro_curve = (w_reg @ cover) / w_reg.sum(axis=1, keepdims=True)
    fpr_curve = fp_px / neg.sum(axis=1, keepdims=True)
    zero = np.zeros((fpr_curve.shape[0], 1))
    fpr_curve, pro_curve = np.hstack((zero, fpr_curve)), np.hstack((zero, pro_curve))
    pro = _areas_to_limit(fpr_curve, pro_curve, float(rec["fpr_limit"]))
    pro_strict = _areas_to_limit(fpr_curve, pro_curve, float(rec.get("fpr_limit_strict", PRO_FPR_LIMIT_STRICT)))
    inter, pred = w @ rec["iou_inter"].astype(np.float64), w @ rec["iou_pred"].astype(np.float64)
    gt = (w @ rec["gt_pixels"].astype(np.float64))[:, None]
    union = pred + gt - inter
    iou = np.max(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0), axis=1)
    out = {"image_auroc": image_auroc, "image_ap": image_ap, "image_f1_max": image_f1, "pixel_auroc": pixel_auroc,
           "pixel_ap": pixel_ap, "pixel_f1_max": pixel_f1, "pro": pro, "pro_strict": pro_strict, "pixel_iou_max": iou}
    out["mad"] = np.mean([out[k] for k in MAD_TERMS], axis=0)
    return out


def pro_curve_from_statistics(rec: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The binned PRO curve (FPR, PRO) of a record, from (0, 0), for plotting."""
    neg = rec["neg_hist"].sum(axis=0).astype(np.float64)
    return np.r_[0.0, np.cumsum(neg[::-1]) / neg.sum()], np.r_[0.0, _coverage(rec).mean(axis=0)]


# ---------------------------------------------------------------- intervals


def check_pair(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], where: str = "") -> None:
    """Two records can be paired only on the same test images (same names, same labels, same order)."""
    if a["score"].size != b["score"].size or not np.array_equal(a["images"], b["images"]) or not np.array_equal(a["label"], b["label"]):
        raise StatsError(f"{where or 'records'}: the two results were not scored on the same test images")


def record_digest(rec: Mapping[str, np.ndarray]) -> str:
    """A digest of a record's content: the same test scoring gives the same digest, whichever selection holds it."""
    h = hashlib.sha1()
    for k in sorted(rec):
        a = np.ascontiguousarray(rec[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- files


def save_statistics(path, records: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """One npz with every selection's record under 'SELECTION/field'."""
    np.savez_compressed(path, **{f"{sel}/{k}": np.asarray(v) for sel, rec in records.items() for k, v in rec.items()})


def load_statistics(path) -> dict[str, dict[str, np.ndarray]]:
    """selection -> record, from ``save_statistics``'s file."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            sel, field = key.split("/", 1)
            out.setdefault(sel, {})[field] = z[key]
    return out

