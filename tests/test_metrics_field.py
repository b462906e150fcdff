"""The metrics of the field's newer benchmarks: AU-PRO at FPR 0.05 beside 0.3, MVTec AD 2's SegF1 at a
threshold fixed on normal images, and image AUROC / PRO per defect type (good images with one type's)."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from masf import records
from masf.config import ConfigError, build_config
from masf.errors import MetricsError
from masf.fingerprint import config_fingerprint
from masf.metrics import (MAD_TERMS, METRIC_KEYS, METRIC_LABELS, SELECTION_METRICS, VAL_THRESHOLD_LABELS, compute_metrics,
                          defect_type_metrics, f1_at, f1_threshold, mad, normal_threshold, pro_score)
from masf.trial.evaluation import Evaluation, val_threshold_metrics
from masf.trial.outcome import selection_extras

# ------------------------------------------------------------------ AU-PRO the way MVTec AD's evaluation code computes it


def mvtec_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve built as the official MVTec AD evaluation code builds it (pro_curve_util.compute_pro): every
    pixel, in descending score order, adds 1 / (defect-free pixels) to the FPR when it is defect-free and
    1 / (|its region| * regions) to the PRO when it lies in a region (8-connected, per image); the cumulative sums
    are kept at the last pixel of each run of equal scores; (0, 0) goes first and (1, 1) last."""
    maps = np.asarray(maps, dtype=np.float64)
    fp_step, pro_step, n_regions = np.zeros(maps.shape), np.zeros(maps.shape), 0
    for i, mask in enumerate(np.asarray(masks) > 0):
        labeled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        n_regions += n
        fp_step[i][labeled == 0] = 1.0
        for r in range(1, n + 1):
            pro_step[i][labeled == r] = 1.0 / np.count_nonzero(labeled == r)
    order = np.argsort(maps.ravel(), kind="stable")[::-1]
    ranked = maps.ravel()[order]
    fpr = np.cumsum(fp_step.ravel()[order]) / fp_step.sum()
    pro = np.cumsum(pro_step.ravel()[order]) / n_regions
    last_of_run = np.append(np.diff(ranked) != 0, True)
    return np.r_[0.0, np.clip(fpr[last_of_run], 0, 1), 1.0], np.r_[0.0, np.clip(pro[last_of_run], 0, 1), 1.0]


def mvtec_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """The integral of the official code's generic_util.trapezoid: trapezoids of the points with x <= x_max, and
    when x_max is not a point, the piece of the segment that crosses it, its end interpolated linearly."""
    correction = 0.0
    if x_max not in x:
        i = bisect.bisect(list(x), x_max)
        y_cut = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_cut + y[i - 1]) * (x_max - x[i - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) + correction)


def mvtec_au_pro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """AU-PRO as the official evaluation reports it: the integral up to the limit, divided by the limit."""
    return mvtec_trapezoid(*mvtec_pro_curve(maps, masks), fpr_limit) / fpr_limit


def random_case(seed: int, n: int = 8, size: int = 24, decimals: int | None = None):
    """(scores, labels, maps, masks): 3 good images, the rest with 1-3 rectangles; smooth noise raised on defects."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(3, n):
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 3, size=2)
            masks[i, y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = True
    maps = ndimage.gaussian_filter(rng.random(masks.shape), sigma=(0, 1.5, 1.5)) + rng.uniform(0, 0.3, (n, 1, 1)) * masks
    if decimals is not None:
        maps = np.round(maps, decimals)  # big runs of tied scores
    labels = masks.any(axis=(1, 2)).astype(int)
    return maps.max(axis=(1, 2)) + 0.1 * rng.random(n), labels, maps, masks


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, None), (2, 2), (3, 1)])
def test_pro_at_both_limits_matches_mvtec_ad_evaluation_code(seed, decimals):
    scores, labels, maps, masks = random_case(seed, decimals=decimals)
    got = compute_metrics(scores, labels, maps, masks)
    assert got["pro_strict"] == pytest.approx(mvtec_au_pro(maps, masks, 0.05), abs=1e-6)
    assert got["pro"] == pytest.approx(mvtec_au_pro(maps, masks, 0.3), abs=1e-6)
    assert got["pro_strict"] == pytest.approx(pro_score(maps, masks, 0.05), abs=1e-12)  # one curve, read at both limits
    assert got["pro"] == pro_score(maps, masks, 0.3)


def test_pro_strict_by_hand():
    # 100 defect-free pixels (2 at 0.95, 98 at 0.1) and one 2x2 region at 0.9: the curve is (0, 0) -> (0.02, 0)
    # -> (0.02, 1) -> (1, 1). To 0.05: 0.03 at PRO 1, / 0.05 = 0.6; to 0.3: 0.28 / 0.3.
    maps = np.full((1, 13, 8), 0.1)
    masks = np.zeros_like(maps, dtype=bool)
    masks[0, 0:2, 0:2] = True
    maps[masks] = 0.9
    maps[0, 5, 5] = maps[0, 6, 6] = 0.95
    assert np.count_nonzero(~masks) == 100
    assert pro_score(maps, masks, 0.05) == pytest.approx(0.6, abs=1e-12)
    assert mvtec_au_pro(maps, masks, 0.05) == pytest.approx(0.6, abs=1e-12)
    # with a good image of 104 pixels at 0.1: 2 of 204 defect-free pixels above the region
    split = (np.concatenate((np.full_like(maps, 0.1), maps)), np.concatenate((np.zeros_like(masks), masks)))
    got = compute_metrics([0.0, 1.0], [0, 1], *split)
    assert got["pro_strict"] == pytest.approx((0.05 - 2 / 204) / 0.05, abs=1e-12)
    assert got["pro"] == pytest.approx((0.3 - 2 / 204) / 0.3, abs=1e-12)
    assert compute_metrics([0.0, 1.0], [0, 1], *split, fpr_limit_strict=0.01)["pro_strict"] == pytest.approx(
        (0.01 - 2 / 204) / 0.01, abs=1e-12)


def test_pro_strict_is_labelled_with_its_limit_and_stays_out_of_mad():
    assert METRIC_LABELS["pro_strict"] == "PRO@0.05" and "pro_strict" in METRIC_KEYS
    assert "pro_strict" not in MAD_TERMS and len(MAD_TERMS) == 7
    scores, labels, maps, masks = random_case(4)
    got = compute_metrics(scores, labels, maps, masks)
    assert got["mad"] == mad(got) == pytest.approx(np.mean([got[k] for k in MAD_TERMS]), abs=1e-15)
    with pytest.raises(MetricsError, match="fpr_limit must be in"):
        compute_metrics(scores, labels, maps, masks, fpr_limit_strict=0.0)


def test_records_recompute_pro_strict_and_old_records_still_give_their_metrics():
    scores, labels, maps, masks = random_case(5, n=20, size=40)
    exact = compute_metrics(scores, labels, maps, masks)
    types = ["good"] * 3 + ["scratch", "stain"] * 8 + ["scratch"]
    rec = records.test_statistics(scores, labels, maps, masks, defect_types=types)
    again = records.metrics_from_statistics(rec)
    assert again["pro_strict"][0] == pytest.approx(exact["pro_strict"], abs=5e-3)  # pixel scores in 512 bins
    assert list(rec["defect_type"]) == types and float(rec["fpr_limit_strict"]) == 0.05
    old = {k: v for k, v in rec.items() if k not in ("defect_type", "fpr_limit_strict")}  # a record of before
    for key, value in records.metrics_from_statistics(old).items():
        assert value[0] == again[key][0], key
    other = records.metrics_from_statistics(records.test_statistics(scores, labels, maps, masks, fpr_limit_strict=0.1))
    assert other["pro_strict"][0] == pytest.approx(compute_metrics(scores, labels, maps, masks, fpr_limit_strict=0.1)["pro_strict"],
                                                   abs=5e-3)
    with pytest.raises(records.StatsError, match="defect_types has 2 entries for 20 images"):
        records.test_statistics(scores, labels, maps, masks, defect_types=["a", "b"])


def test_defect_type_survives_the_file(tmp_path):
    scores, labels, maps, masks = random_case(6)
    types = ["good"] * 3 + ["logical_anomalies", "structural_anomalies"] * 2 + ["logical_anomalies"]
    path = tmp_path / "test_stats.npz"
    records.save_statistics(path, {"last": records.test_statistics(scores, labels, maps, masks, defect_types=types),
                                   "best_on_val": records.test_statistics(scores, labels, maps, masks)})
    back = records.load_statistics(path)
    assert list(back["last"]["defect_type"]) == types and "defect_type" not in back["best_on_val"]
    assert records.metrics_from_statistics(back["best_on_val"])["pro_strict"][0] == \
        records.metrics_from_statistics(back["last"])["pro_strict"][0]


# ------------------------------------------------------------------ SegF1


def _evaluation(scores, labels, maps, masks) -> Evaluation:
    maps = np.asarray(maps, dtype=np.float32)
    return Evaluation({}, np.asarray(scores, float), np.asarray(labels), maps, np.asarray(masks, np.uint8), 0.0)


def test_normal_threshold_is_mean_plus_three_std_of_the_normal_pixels():
    assert normal_threshold(np.array([[[0.0, 1.0], [2.0, 3.0]]])) == pytest.approx(1.5 + 3 * math.sqrt(1.25), abs=1e-12)
    assert normal_threshold(np.ones((2, 3, 3))) == 1.0
    with pytest.raises(MetricsError, match="at least one normal image"):
        normal_threshold(np.zeros((0, 4, 4)))


def test_seg_f1_takes_the_threshold_from_validation_normals_and_pools_every_test_pixel():
    # validation: one normal (pixels 0, 1, 2, 3: threshold 1.5 + 3 sqrt(1.25) = 4.854) and its pseudo-anomalous
    # copy (label 1, scores far higher, left out of the threshold)
    val = _evaluation([0.1, 0.9], [0, 1], [[[0, 1], [2, 3]], [[50, 60], [2, 3]]], [[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    # test: a good image with one pixel above the threshold (1 FP), a defective one with 2 defect pixels, one above
    # (1 TP, 1 FN). Pooled: 2 TP / (2 TP + FP + FN) = 2 / 4 = 0.5 (averaged over images it would be 0 and 2 / 3).
    tested = _evaluation([0.2, 0.8], [0, 1], [[[5, 0], [0, 0]], [[6, 1], [0, 0]]], [[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    got = val_threshold_metrics(tested, val)
    assert got["pixel_normal_threshold"] == pytest.approx(1.5 + 3 * math.sqrt(1.25), abs=1e-6)
    assert got["pixel_f1_at_normal_threshold"] == 0.5
    # beside it, unchanged: F1 at the thresholds best on the whole validation split
    assert got["pixel_f1_at_val_threshold"] == f1_at(tested.maps, tested.masks, f1_threshold(val.maps, val.masks))
    assert got["image_f1_at_val_threshold"] == f1_at(tested.image_scores, tested.labels, f1_threshold(val.image_scores, val.labels))
    assert set(got) == set(VAL_THRESHOLD_LABELS) | {"pixel_normal_threshold"} and VAL_THRESHOLD_LABELS["pixel_f1_at_normal_threshold"] == "SegF1"


def test_seg_f1_without_a_validation_normal_is_nan():
    val = _evaluation([0.9], [1], [[[50, 60], [2, 3]]], [[[1, 1], [0, 0]]])
    tested = _evaluation([0.2, 0.8], [0, 1], [[[5, 0], [0, 0]], [[6, 1], [0, 0]]], [[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    got = val_threshold_metrics(tested, val)
    assert math.isnan(got["pixel_f1_at_normal_threshold"]) and math.isnan(got["pixel_normal_threshold"])


# ------------------------------------------------------------------ per defect type


def test_defect_type_metrics_are_those_of_good_images_with_one_type():
    scores, labels, maps, masks = random_case(7, n=11)
    types = np.array(["good"] * 3 + ["crack", "cut", "crack", "hole", "cut", "crack", "hole", "cut"])
    got = defect_type_metrics(scores, labels, maps, masks, types, fpr_limit=0.3)
    assert list(got) == [f"defect/{t}/{m}" for t in ("crack", "cut", "hole") for m in ("image_auroc", "pro")]
    for t in ("crack", "cut", "hole"):
        keep = (labels == 0) | (types == t)
        assert got[f"defect/{t}/image_auroc"] == roc_auc_score(labels[keep], scores[keep])
        assert got[f"defect/{t}/pro"] == pro_score(maps[keep], masks[keep], 0.3)
        assert got[f"defect/{t}/pro"] == pytest.approx(mvtec_au_pro(maps[keep], masks[keep], 0.3), abs=1e-6)


def test_defect_type_metrics_by_hand_and_where_they_are_left_out():
    # good 0.1, 0.5; logical 0.4 (ranked below one good: AUROC 0.5), structural 0.9 (AUROC 1.0)
    maps = np.zeros((4, 4, 4))
    masks = np.zeros((4, 4, 4))
    masks[3, 1:3, 1:3] = 1  # the logical anomaly has no mask pixel: no PRO for it
    got = defect_type_metrics([0.1, 0.5, 0.4, 0.9], [0, 0, 1, 1], maps + masks, masks,
                              ["good", "good", "logical_anomalies", "structural_anomalies"])
    assert got == {"defect/logical_anomalies/image_auroc": 0.5, "defect/structural_anomalies/image_auroc": 1.0,
                   "defect/structural_anomalies/pro": 1.0}
    assert defect_type_metrics([0.4, 0.9], [1, 1], maps[2:] + masks[2:], masks[2:], ["a", "b"]) == {}  # no good image
    with pytest.raises(MetricsError, match="differ in length"):
        defect_type_metrics([0.1, 0.5, 0.4, 0.9], [0, 0, 1, 1], maps, masks, ["good", "a"])


def test_selection_extras_key_the_row_as_the_leaderboard_reads_it():
    last = {"pro": 0.5, "defect/crack/image_auroc": 0.75, "defect/crack/pro": 0.5, "pixel_normal_threshold": 1.25}
    assert selection_extras({"last": last, "best_on_val": None}) == {
        "last/defect/crack/image_auroc": 0.75, "last/defect/crack/pro": 0.5, "last/pixel_normal_threshold": 1.25}


# ------------------------------------------------------------------ config


def test_the_strict_limit_is_a_checked_config_key_that_keeps_old_fingerprints():
    cfg = build_config("smoke")
    assert cfg.eval.pro_fpr_limit_strict == 0.05
    flat = cfg.to_dict()
    del flat["eval"]["pro_fpr_limit_strict"]  # a config of before the key existed
    assert config_fingerprint(flat) == config_fingerprint(cfg)
    assert config_fingerprint(build_config("smoke", ["eval.pro_fpr_limit_strict=0.1"])) != config_fingerprint(cfg)
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="eval.pro_fpr_limit_strict"):
            build_config("smoke", [f"eval.pro_fpr_limit_strict={bad}"])


# ------------------------------------------------------------------ a trial


def test_a_trial_reports_pro_strict_seg_f1_and_per_type_metrics(synth_root, tiny, tmp_path):
    from masf.method.model import MASF
    from masf.method.teacher import build_teacher
    from masf.trial.run import build_datasets
    from masf.trial.trainer import Trainer

    cfg = build_config(None, tiny(synth_root))
    teacher = build_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    trainer = Trainer(cfg, MASF(cfg.model, teacher, seed=cfg.train.seed), train, test, tmp_path, val_set=val)
    outcome = trainer.fit()
    assert set(outcome.last) == set(SELECTION_METRICS) and {"pro_strict", "pixel_f1_at_normal_threshold"} <= set(outcome.last)
    assert "val/pro_strict" in outcome.history[-1] and "student_only/pro_strict" in outcome.student_only
    final, extras = outcome.final, outcome.selection_extras
    assert outcome.last["pro_strict"] == pytest.approx(mvtec_au_pro(final.maps, final.masks, 0.05), abs=1e-6)
    threshold = extras["last/pixel_normal_threshold"]
    assert outcome.last["pixel_f1_at_normal_threshold"] == f1_at(final.maps, final.masks, threshold)
    scored_val = trainer.evaluate(loader=trainer.val_loader)  # the validation split again: its normals give the threshold
    assert threshold == pytest.approx(normal_threshold(scored_val.maps[scored_val.labels == 0]), rel=1e-6)
    types = np.array([s.defect_type for s in test.samples])
    assert list(outcome.test_stats["last"]["defect_type"]) == list(types)
    kinds = sorted(set(types[final.labels == 1]))
    assert len(kinds) >= 2 and all(f"best_on_val/defect/{t}/image_auroc" in extras for t in kinds)
    for t in kinds:
        keep = (final.labels == 0) | (types == t)
        assert extras[f"last/defect/{t}/image_auroc"] == roc_auc_score(final.labels[keep], final.image_scores[keep])
        assert extras[f"last/defect/{t}/pro"] == pro_score(final.maps[keep], final.masks[keep], 0.3)
