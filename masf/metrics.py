"""Anomaly-detection metrics: image and pixel AUROC, AP and best F1, and PRO (MVTec AD).

Every function takes numpy arrays or torch tensors and returns plain floats. Ranking
metrics come from scikit-learn; connected components from ``scipy.ndimage.label``.

PRO follows the MVTec AD definition (MASF-SPEC.md, "Metrics"):

- regions are the 8-connected components of each ground-truth mask, the way MVTec AD's
  own evaluation code labels them (``scipy.ndimage.label`` with a 3x3 all-ones
  structure); a region never spans two images;
- a threshold t marks a pixel positive when its score is >= t; there is one curve point
  per distinct score (tied pixels enter together), and the curve starts at (0, 0);
- PRO(t) = mean over all regions of all images of (positive pixels in the region /
  region size); FPR(t) = positive defect-free pixels / all defect-free pixels, over
  every test image, good and defective;
- the score is the trapezoid area under PRO(FPR) for FPR in [0, fpr_limit], the curve
  cut exactly at fpr_limit by linear interpolation, divided by fpr_limit;
- it is reported at two limits: ``pro`` at ``eval.pro_fpr_limit`` (0.3, MVTec AD) and
  ``pro_strict`` at ``eval.pro_fpr_limit_strict`` (0.05, as MVTec AD 2 reports it), both
  read off one curve.

SegF1 (MVTec AD 2, Heckler-Kram et al. 2025, arXiv:2503.21622; ``normal_threshold``, ``f1_at``):
the test split's anomaly maps binarised at a threshold fixed on normal images only, mean + 3
standard deviations of the scores of every pixel of their maps, and the F1 of the binarised
pixels (score >= threshold) against the ground truth, pooled over every pixel of the test split
(what of this the paper itself confirms: MASF-SPEC.md, "Metrics").

Per defect type (``defect_type_metrics``): image AUROC and PRO on the good test images with
the images of one defect type, the way MVTec LOCO's evaluation splits logical from
structural anomalies.

The rest of the field's metric set follows ADer's evaluator (zhangzjn/ADer, util/metric.py, and
the mAD column of its benchmark tables):

- pixel IoU-max: the anomaly maps min-max normalised over the whole split, a pixel positive when
  its normalised score is > t, t in 0, 0.05, ..., 1.0 (21 thresholds); IoU = |positive and defect|
  / |positive or defect| summed over every pixel of the split; the best t's IoU;
- mAD: the mean of image AUROC, image AP, image F1-max, pixel AUROC, pixel AP, pixel F1-max and
  PRO (AUPRO at ``eval.pro_fpr_limit``); IoU-max and ``pro_strict`` are reported beside it but not in it.

F1-max and IoU-max take the best threshold of the split itself (an oracle threshold, "test-threshold"
on the test split), and so does mAD through its F1-max terms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from masf.errors import MetricsError

ArrayLike = Any  # numpy array, torch tensor or nested sequence of numbers

PRO_FPR_LIMIT = 0.3  # MVTec AD's AU-PRO limit (eval.pro_fpr_limit), key "pro"
PRO_FPR_LIMIT_STRICT = 0.05  # the stricter limit MVTec AD 2 reports (eval.pro_fpr_limit_strict), key "pro_strict"
SEG_F1_SIGMAS = 3.0  # SegF1's threshold: mean + this many standard deviations of the normal images' pixel scores


def pro_label(fpr_limit: float) -> str:
    """What a table calls AU-PRO at ``fpr_limit``: "PRO@0.05"."""
    return f"PRO@{fpr_limit:g}"


# the metrics of one split and what a table calls them; *_f1_max use the best threshold of that split itself
# (an oracle threshold)
METRIC_LABELS = {"image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
                 "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max", "pro": "PRO",
                 "pro_strict": pro_label(PRO_FPR_LIMIT_STRICT), "pixel_iou_max": "pixel IoU-max", "mad": "mAD"}
METRIC_KEYS = tuple(METRIC_LABELS)
# the metrics whose threshold is chosen on the split they measure (on test: a test-chosen threshold)
TEST_THRESHOLD_METRICS = ("image_f1_max", "pixel_f1_max", "pixel_iou_max", "mad")
# ADer's mAD: the mean of these seven (IoU-max is not one of them)
MAD_TERMS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro")
# ADer's IoU-max thresholds on the min-max normalised maps
IOU_THRESHOLDS = np.round(np.arange(0.0, 1.0 + 1e-3, 0.05), 2)
# on the test split also: F1 at thresholds fixed on the validation split, and what a table calls them: the
# thresholds that are best on the whole split, and (SegF1) mean + 3 std of its normal images' pixel scores
VAL_THRESHOLD_LABELS = {"image_f1_at_val_threshold": "image F1 (val. threshold)",
                        "pixel_f1_at_val_threshold": "pixel F1 (val. threshold)",
                        "pixel_f1_at_normal_threshold": "SegF1"}
VAL_THRESHOLD_METRICS = tuple(VAL_THRESHOLD_LABELS)
# the test metrics each epoch selection of a trial reports
SELECTION_METRICS = METRIC_KEYS + VAL_THRESHOLD_METRICS
# the epoch selections of a trial: the final epoch (the headline), the epoch chosen on
# validation, the epoch chosen on test (the paper's protocol, optimistic)
SELECTIONS = ("last", "best_on_val", "best_on_test")

# 8-connectivity inside each (H, W) slice; the empty outer slices keep a component from
# running across neighbouring images of the (N, H, W) stack.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:  # float16 / bfloat16: numpy lacks bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _scores(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Finite float scores with ``ndim`` axes; float32 / float64 keep their dtype (sorting float32 is faster)."""
    a = _to_numpy(x)
    if a.dtype.kind not in "biuf":
        raise MetricsError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    if a.ndim != ndim:
        raise MetricsError(f"{name} must have {ndim} axes, got shape {a.shape}")
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise MetricsError(f"{name} has {bad} non-finite values (NaN or inf) out of {a.size}")
    return a


def _binary(x: ArrayLike, name: str) -> np.ndarray:
    """1-D labels with values 0 / 1 (or bool) -> bool."""
    a = _to_numpy(x)
    if a.ndim != 1:
        raise MetricsError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise MetricsError(f"{name} must be 0 / 1, got dtype {a.dtype}")
    odd = np.unique(a[(a != 0) & (a != 1)])
    if odd.size:
        raise MetricsError(f"{name} must be 0 / 1, got value {odd[0].item()!r}")
    return a.astype(bool)


def _squeeze_channel(a: np.ndarray) -> np.ndarray:
    # (N, 1, H, W), as models and datasets often give them -> (N, H, W)
    return a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a


def _maps_and_masks(anomaly_maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated (N, H, W) float maps and (N, H, W) bool defect masks (mask > 0 is defect)."""
    maps = _scores(_squeeze_channel(_to_numpy(anomaly_maps)), "anomaly_maps", 3)
    m = _squeeze_channel(_to_numpy(masks))
    if m.dtype.kind not in "biuf":
        raise MetricsError(f"masks must be numeric or bool, got dtype {m.dtype}")
    if m.shape != maps.shape:
        raise MetricsError(f"anomaly_maps shape {maps.shape} and masks shape {m.shape} differ")
    if m.dtype.kind == "f":
        bad = m.size - int(np.count_nonzero(np.isfinite(m)))
        if bad:
            raise MetricsError(f"masks has {bad} non-finite values (NaN or inf) out of {m.size}")
    defect = m > 0
    n_defect = int(np.count_nonzero(defect))
    if n_defect == 0:
        raise MetricsError(f"masks have no defect pixel in {maps.shape[0]} images: PRO and pixel metrics need one")
    if n_defect == defect.size:
        raise MetricsError(f"masks have no defect-free pixel in {maps.shape[0]} images: the FPR is undefined")
    return maps, defect


def _check_limit(fpr_limit: float) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError):
        limit = math.nan
    if not 0.0 < limit <= 1.0:  # also false for NaN
        raise MetricsError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit


def _pr_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(average precision, best F1) from one ``precision_recall_curve`` call (one sort of the scores)."""
    from sklearn.metrics import precision_recall_curve  # scikit-learn loads with the first metric, not with the key lists

    precision, recall, _ = precision_recall_curve(labels, scores)
    # sklearn's average_precision_score is exactly this step sum over the same curve
    ap = max(0.0, float(-np.sum(np.diff(recall) * precision[:-1])))
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)  # 0/0 -> 0
    return ap, float(f1.max())


def f1_threshold(scores: ArrayLike, labels: ArrayLike) -> float:
    """The threshold (score >= t is anomalous) that gives the best F1 on these scores and labels."""
    s = _scores(np.ravel(_to_numpy(scores)), "scores", 1)
    y = _binary(np.ravel(_to_numpy(labels)), "labels")
    if s.shape != y.shape:
        raise MetricsError(f"scores size {s.size} and labels size {y.size} differ")
    if not y.any():
        raise MetricsError(f"labels are all 0 ({y.size} samples): F1 needs a positive sample")
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, s)
    denom = precision[:-1] + recall[:-1]
    f1 = np.divide(2.0 * precision[:-1] * recall[:-1], denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])


def f1_at(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """F1 of the decision ``score >= threshold`` (a threshold fixed beforehand, e.g. on validation)."""
    s = _scores(np.ravel(_to_numpy(scores)), "scores", 1)
    y = _binary(np.ravel(_to_numpy(labels)), "labels")
    if s.shape != y.shape:
        raise MetricsError(f"scores size {s.size} and labels size {y.size} differ")
    pred = s >= threshold
    tp = float(np.count_nonzero(pred & y))
    denom = float(np.count_nonzero(pred)) + float(np.count_nonzero(y))
    return 2.0 * tp / denom if denom > 0 else 0.0


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    """Best F1 = max over thresholds of 2PR / (P + R), from sklearn's ``precision_recall_curve``."""
    s = _scores(scores, "scores", 1)
    y = _binary(labels, "labels")
    if s.shape != y.shape:
        raise MetricsError(f"scores length {s.shape[0]} and labels length {y.shape[0]} differ")
    if not y.any():
        raise MetricsError(f"labels are all 0 ({y.size} samples): F1 needs a positive sample")
    return _pr_metrics(s, y)[1]


def _pro_curve(maps: np.ndarray, defect: np.ndarray, fpr_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) of validated inputs, one point per distinct score from (0, 0), up to the first point past fpr_limit.

    One sort instead of a loop over thresholds: with the defect-free scores sorted,
    the count at or above t is a ``searchsorted``; each defect pixel of region r
    carries weight 1 / (|r| * n_regions), so PRO(t) is the summed weight of the defect
    pixels at or above t, read off a cumulative sum over them in descending score order.
    """
    from scipy import ndimage

    labels, n_regions = ndimage.label(defect, structure=_REGION_STRUCTURE)  # (N, H, W), 0 = defect-free
    neg = maps[~defect]  # (P_neg,) scores of defect-free pixels
    pos = maps[defect]  # (P_pos,) scores of defect pixels
    region = labels[defect]  # (P_pos,) region id of each, 1..n_regions
    sizes = np.bincount(region, minlength=n_regions + 1).astype(np.float64)  # sizes[r] = |r|
    weight = 1.0 / (sizes[region] * n_regions)  # (P_pos,) float64; each region sums to 1 / n_regions
    n_neg = neg.size

    # Pixels below the m-th highest defect-free score v only make points past the
    # first one beyond the limit: at v, m > limit * n_neg + 1 defect-free pixels are
    # positive (one spare against rounding). Dropping them leaves about a fraction
    # fpr_limit of the pixels to sort.
    m = min(math.floor(fpr_limit * n_neg) + 2, n_neg)
    if m < n_neg:
        v = np.partition(neg, n_neg - m)[n_neg - m]
        neg = neg[neg >= v]
        keep = pos >= v
        pos, weight = pos[keep], weight[keep]

    neg_sorted = np.sort(neg)  # ascending
    order = np.argsort(pos, kind="stable")
    pos_sorted = pos[order]  # ascending
    top_weight = np.concatenate(([0.0], np.cumsum(weight[order][::-1])))  # [k] = weight of the k top-scoring defect pixels
    thresholds = np.unique(np.concatenate((neg_sorted, pos_sorted)))[::-1]  # distinct scores, descending
    n_fp = neg_sorted.size - np.searchsorted(neg_sorted, thresholds, side="left")  # defect-free pixels >= t
    n_tp = pos_sorted.size - np.searchsorted(pos_sorted, thresholds, side="left")  # defect pixels >= t
    fpr = np.concatenate(([0.0], n_fp / n_neg))
    pro = np.concatenate(([0.0], top_weight[n_tp]))
    return fpr, pro


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under pro(fpr) on [0, fpr_limit], cut at fpr_limit by interpolation, / fpr_limit."""
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))  # points with fpr <= limit (fpr is non-decreasing)
    x, y = fpr[:k], pro[:k]
    if k < fpr.size:  # fpr[k - 1] <= limit < fpr[k]: end the curve at the limit
        t = (fpr_limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x = np.append(x, fpr_limit)
        y = np.append(y, pro[k - 1] + t * (pro[k] - pro[k - 1]))
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))
    return min(max(area / fpr_limit, 0.0), 1.0)  # clip float rounding only


def pro_curve(anomaly_maps: ArrayLike, masks: ArrayLike, fpr_limit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve as (FPR, PRO) arrays, starting at (0, 0), one point per distinct score.

    The curve is complete up to its first point past ``fpr_limit`` and stops there
    (the default 1.0 gives the whole curve, e.g. for plotting).
    """
    limit = _check_limit(fpr_limit)
    maps, defect = _maps_and_masks(anomaly_maps, masks)
    return _pro_curve(maps, defect, limit)


def pro_score(anomaly_maps: ArrayLike, masks: ArrayLike, fpr_limit: float = PRO_FPR_LIMIT) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit] (MVTec AD's PRO)."""
    limit = _check_limit(fpr_limit)
    maps, defect = _maps_and_masks(anomaly_maps, masks)
    fpr, pro = _pro_curve(maps, defect, limit)
    return _area_to_limit(fpr, pro, limit)


def normal_threshold(normal_maps: ArrayLike) -> float:
    """SegF1's threshold: mean + ``SEG_F1_SIGMAS`` (3) standard deviations (population, ddof 0) of the scores
    of every pixel of ``normal_maps``, the anomaly maps of defect-free images only."""
    s = _scores(np.ravel(_to_numpy(normal_maps)), "normal_maps", 1).astype(np.float64)
    if not s.size:
        raise MetricsError("normal_maps is empty: the threshold needs the maps of at least one normal image")
    return float(s.mean() + SEG_F1_SIGMAS * s.std())


def defect_type_metrics(image_scores: ArrayLike, image_labels: ArrayLike, anomaly_maps: ArrayLike, masks: ArrayLike,
                        defect_types: Any, fpr_limit: float = PRO_FPR_LIMIT) -> dict[str, float]:
    """Image AUROC and PRO of each defect type T, on the good images (label 0) with the images of type T.

    T ranges over the ``defect_types`` (one string per image) of the defective images (label 1); the
    images of other types are left out, as MVTec LOCO's evaluation scores logical and structural
    anomalies apart. Keys: ``defect/<T>/image_auroc`` and ``defect/<T>/pro`` (PRO at ``fpr_limit``); a
    trial's result row prefixes the epoch selection: ``<selection>/defect/<T>/<metric>``, e.g.
    ``last/defect/logical_anomalies/image_auroc``. Nothing without a good image; no ``pro`` for a type
    whose masks have no defect pixel.
    """
    from sklearn.metrics import roc_auc_score

    scores = _scores(image_scores, "image_scores", 1)
    labels = _binary(image_labels, "image_labels")
    types = np.asarray(list(defect_types), dtype=str)
    maps = _scores(_squeeze_channel(_to_numpy(anomaly_maps)), "anomaly_maps", 3)
    defect = _squeeze_channel(_to_numpy(masks)) > 0
    if not scores.shape[0] == labels.shape[0] == types.shape[0] == maps.shape[0] == defect.shape[0]:
        raise MetricsError(f"image_scores, image_labels, defect_types, anomaly_maps and masks differ in length "
                           f"({scores.shape[0]}, {labels.shape[0]}, {types.shape[0]}, {maps.shape[0]}, {defect.shape[0]})")
    out: dict[str, float] = {}
    if labels.all():
        return out
    for kind in dict.fromkeys(types[labels]):  # in the order of the split
        keep = ~labels | (labels & (types == kind))
        out[f"defect/{kind}/image_auroc"] = float(roc_auc_score(labels[keep], scores[keep]))
        if defect[keep].any():
            out[f"defect/{kind}/pro"] = pro_score(maps[keep], defect[keep], fpr_limit)
    return out


def normalized_maps(maps: np.ndarray) -> np.ndarray:
    """Maps min-max normalised over the whole split (all equal: all 0), as ADer normalises them."""
    lo, hi = float(maps.min()), float(maps.max())
    return (maps - lo) / (hi - lo) if hi > lo else np.zeros_like(maps)


def _iou_max(maps: np.ndarray, defect: np.ndarray) -> float:
    norm = normalized_maps(maps).ravel()
    gt = defect.ravel()
    n_gt = int(np.count_nonzero(gt))
    # the positive counts at every threshold from one sort: a pixel is positive at t when norm > t
    order = np.sort(norm)
    gt_sorted = np.sort(norm[gt])
    pred = norm.size - np.searchsorted(order, IOU_THRESHOLDS, side="right")
    inter = gt_sorted.size - np.searchsorted(gt_sorted, IOU_THRESHOLDS, side="right")
    union = pred + n_gt - inter
    return float(np.max(np.divide(inter, union, out=np.zeros(len(IOU_THRESHOLDS)), where=union > 0)))


def pixel_iou_max(anomaly_maps: ArrayLike, masks: ArrayLike) -> float:
    """ADer's pixel IoU-max (module docstring): the best IoU of the normalised maps over 21 thresholds."""
    maps, defect = _maps_and_masks(anomaly_maps, masks)
    return _iou_max(maps, defect)


def mad(metrics: dict[str, float]) -> float:
    """ADer's mAD: the mean of the seven ``MAD_TERMS`` (fractions in, a fraction out)."""
    return float(np.mean([metrics[k] for k in MAD_TERMS]))


def compute_metrics(
    image_scores: ArrayLike,
    image_labels: ArrayLike,
    anomaly_maps: ArrayLike,
    masks: ArrayLike,
    fpr_limit: float = PRO_FPR_LIMIT,
    fpr_limit_strict: float = PRO_FPR_LIMIT_STRICT,
) -> dict[str, float]:
    """All metrics of one category: image level over (N,) scores, pixel level and PRO over (N, H, W) maps.

    ``image_labels`` is 1 for a defective image; ``masks`` count any value > 0 as defect. ``pro`` is
    AU-PRO at ``fpr_limit``, ``pro_strict`` at ``fpr_limit_strict``, both off one PRO curve.
    Returns the floats named in ``METRIC_KEYS``, each in [0, 1].
    """
    from sklearn.metrics import roc_auc_score

    limit, strict = _check_limit(fpr_limit), _check_limit(fpr_limit_strict)
    scores = _scores(image_scores, "image_scores", 1)
    labels = _binary(image_labels, "image_labels")
    if scores.shape != labels.shape:
        raise MetricsError(f"image_scores length {scores.shape[0]} and image_labels length {labels.shape[0]} differ")
    if not labels.any():
        raise MetricsError(f"image_labels has no defective image (all {labels.size} are 0)")
    if labels.all():
        raise MetricsError(f"image_labels has no good image (all {labels.size} are 1)")
    maps, defect = _maps_and_masks(anomaly_maps, masks)
    if maps.shape[0] != scores.shape[0]:
        raise MetricsError(f"anomaly_maps has {maps.shape[0]} images but image_scores has {scores.shape[0]}")

    image_ap, image_f1 = _pr_metrics(scores, labels)
    pixel_scores, pixel_labels = maps.ravel(), defect.ravel()
    pixel_ap, pixel_f1 = _pr_metrics(pixel_scores, pixel_labels)
    fpr, pro = _pro_curve(maps, defect, max(limit, strict))  # complete up to either limit
    out = {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_ap": image_ap,
        "image_f1_max": image_f1,
        "pixel_auroc": float(roc_auc_score(pixel_labels, pixel_scores)),
        "pixel_ap": pixel_ap,
        "pixel_f1_max": pixel_f1,
        "pro": _area_to_limit(fpr, pro, limit),
        "pro_strict": _area_to_limit(fpr, pro, strict),
        "pixel_iou_max": _iou_max(maps, defect),
    }
    out["mad"] = mad(out)
    return out
