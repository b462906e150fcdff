"""Metrics against sklearn and against a plain per-threshold PRO written from the MVTec AD definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from masf.errors import MetricsError
from masf.metrics import METRIC_KEYS, compute_metrics, f1_max, pro_curve, pro_score


def reference_pro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """PRO by the definition, one threshold at a time: slow, and obviously so."""
    maps = np.asarray(maps, dtype=np.float64)
    defect = np.asarray(masks) > 0
    region_scores = []  # scores of the pixels of each 8-connected region, every image
    for img in range(maps.shape[0]):
        labels, n = ndimage.label(defect[img], structure=np.ones((3, 3), dtype=int))
        region_scores += [maps[img][labels == r] for r in range(1, n + 1)]
    free_scores = maps[~defect]  # every defect-free pixel of every image

    fprs, pros = [], []
    for t in np.concatenate(([np.inf], np.unique(maps)[::-1])):  # +inf gives (0, 0)
        fprs.append(np.count_nonzero(free_scores >= t) / free_scores.size)
        pros.append(np.mean([np.count_nonzero(s >= t) / s.size for s in region_scores]))

    area = 0.0
    for i in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[i - 1], fprs[i], pros[i - 1], pros[i]
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
            continue
        if x0 < fpr_limit:  # the segment crosses the limit: cut it there
            y_cut = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_cut) / 2
        break
    return area / fpr_limit


def make_masks(rng: np.random.Generator, n: int = 6, size: int = 24, good: int = 2) -> np.ndarray:
    """(n, size, size) bool: the first ``good`` images clean, the others with 2-4 rectangles each."""
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(good, n):
        for _ in range(rng.integers(2, 5)):
            y, x = rng.integers(0, size - 2, size=2)
            masks[i, y : y + rng.integers(1, 7), x : x + rng.integers(1, 7)] = True
    # two squares touching only at a corner: one region under 8-connectivity
    masks[good, 0:2, 0:2] = True
    masks[good, 2:4, 2:4] = True
    return masks


def make_maps(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """Smooth noise, raised on the defects by a random amount per image: a detector of middling skill."""
    noise = ndimage.gaussian_filter(rng.random(masks.shape), sigma=(0, 1.5, 1.5))
    lift = rng.uniform(0.0, 0.3, size=(masks.shape[0], 1, 1))
    return (noise + lift * masks).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_pro_matches_reference_on_random_maps(seed: int, fpr_limit: float) -> None:
    rng = np.random.default_rng(seed)
    masks = make_masks(rng)
    maps = make_maps(rng, masks)
    assert pro_score(maps, masks, fpr_limit) == pytest.approx(reference_pro(maps, masks, fpr_limit), abs=1e-6)


@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.1])
def test_pro_matches_reference_with_tied_scores(decimals: int, fpr_limit: float) -> None:
    rng = np.random.default_rng(10 + decimals)
    masks = make_masks(rng)
    maps = np.round(make_maps(rng, masks), decimals)  # few distinct values: big tie groups, FPR jumps
    expected = reference_pro(maps, masks, fpr_limit)
    assert pro_score(maps, masks, fpr_limit) == pytest.approx(expected, abs=1e-6)


def test_pro_matches_reference_when_all_images_defective() -> None:
    rng = np.random.default_rng(5)
    masks = make_masks(rng, n=4, size=20, good=0)
    maps = make_maps(rng, masks)
    assert pro_score(maps, masks) == pytest.approx(reference_pro(maps, masks, 0.3), abs=1e-6)


def test_pro_interpolates_where_the_curve_jumps_over_the_limit() -> None:
    # One 4x4 image, one 2x2 region. Curve: (0, 0) -> t=0.95 (0, 0.5) -> t=0.9 (0.5, 1) -> (1, 1).
    # Cut at 0.3: PRO = 0.5 + 0.5 * 0.3 / 0.5 = 0.8, area 0.3 * (0.5 + 0.8) / 2, / 0.3 = 0.65.
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    maps = np.array([[[0.95, 0.95, 0.0, 0.0],  # defect pixels: two at 0.95, two tied at 0.9
                      [0.9, 0.9, 0.0, 0.0],  # with 6 of the 12 defect-free pixels
                      [0.0, 0.0, 0.9, 0.9],
                      [0.9, 0.9, 0.9, 0.9]]])
    assert np.count_nonzero((maps == 0.9) & ~masks) == 6
    assert pro_score(maps, masks, 0.3) == pytest.approx(0.65, abs=1e-12)
    assert reference_pro(maps, masks, 0.3) == pytest.approx(0.65, abs=1e-12)


def test_regions_are_8_connected() -> None:
    # A 2x2 square (score 1) and a 3x3 square (score 0.5) touching at a corner form ONE
    # region of 13 pixels. 40 of the 51 defect-free pixels score 0.75, so the curve is
    # flat at PRO = 4 / 13 from FPR 0 to past 0.3 (4-connectivity would give 0.5).
    maps = np.zeros((1, 8, 8))
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[0, 3:6, 3:6] = True
    maps[0, 1:3, 1:3] = 1.0
    maps[0, 3:6, 3:6] = 0.5
    free = np.flatnonzero(~masks.ravel())
    maps.ravel()[free[:40]] = 0.75
    assert pro_score(maps, masks, 0.3) == pytest.approx(4 / 13, abs=1e-12)


def test_perfect_detector_scores_one() -> None:
    rng = np.random.default_rng(3)
    masks = make_masks(rng)
    labels = masks.any(axis=(1, 2)).astype(int)
    maps = masks.astype(np.float32)
    result = compute_metrics(labels.astype(float), labels, maps, masks)
    assert result["pro"] == pytest.approx(1.0, abs=1e-12)
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max"):
        assert result[key] == 1.0, key


@pytest.mark.parametrize("fpr_limit", [0.3, 0.1, 1.0])
def test_constant_map_gives_the_diagonal(fpr_limit: float) -> None:
    # Every pixel enters at once: the curve is (0, 0) -> (1, 1), so PRO = fpr_limit / 2.
    masks = make_masks(np.random.default_rng(4))
    labels = masks.any(axis=(1, 2))
    result = compute_metrics(np.ones(6), labels, np.full(masks.shape, 0.7), masks, fpr_limit=fpr_limit)
    assert result["pro"] == pytest.approx(fpr_limit / 2, abs=1e-12)
    assert result["image_auroc"] == 0.5 and result["pixel_auroc"] == 0.5
    p = masks.mean()
    assert result["pixel_ap"] == pytest.approx(p, abs=1e-12)
    assert result["pixel_f1_max"] == pytest.approx(2 * p / (p + 1), abs=1e-12)
    assert result["image_ap"] == pytest.approx(labels.mean(), abs=1e-12)


def test_auroc_and_ap_match_sklearn() -> None:
    rng = np.random.default_rng(6)
    masks = make_masks(rng)
    maps = np.round(make_maps(rng, masks), 2)
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.max(axis=(1, 2))
    result = compute_metrics(scores, labels, maps, masks)
    assert set(result) == set(METRIC_KEYS)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result.values())
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert result["pixel_ap"] == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert result["pro"] == pytest.approx(reference_pro(maps, masks, 0.3), abs=1e-6)


def test_f1_max_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(200), 1)  # ties
    labels = (rng.random(200) < scores).astype(int)
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.count_nonzero(pred & (labels == 1))
        if tp:
            precision, recall = tp / pred.sum(), tp / labels.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
    assert f1_max(scores, labels) == pytest.approx(best, abs=1e-12)
    assert f1_max([0.1, 0.9], [0, 1]) == 1.0


def test_pro_curve_shape_and_cut() -> None:
    rng = np.random.default_rng(8)
    masks = make_masks(rng)
    maps = np.round(make_maps(rng, masks), 2)
    fpr, pro = pro_curve(maps, masks)
    assert fpr.shape == pro.shape == (np.unique(maps).size + 1,)  # one point per distinct score, plus (0, 0)
    assert fpr[0] == 0.0 and pro[0] == 0.0
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-15)
    short_fpr, short_pro = pro_curve(maps, masks, fpr_limit=0.3)
    k = short_fpr.size
    assert short_fpr[-1] > 0.3 >= short_fpr[-2]  # stops at its first point past the limit
    np.testing.assert_allclose(short_fpr, fpr[:k], rtol=0, atol=1e-15)
    np.testing.assert_allclose(short_pro, pro[:k], rtol=0, atol=1e-12)


def test_input_forms_agree() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    masks = make_masks(rng)
    maps = make_maps(rng, masks)
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.max(axis=(1, 2))
    expected = compute_metrics(scores, labels, maps, masks)
    as_255 = compute_metrics(scores, labels, maps, masks.astype(np.uint8) * 255)
    as_torch = compute_metrics(
        torch.from_numpy(scores), torch.from_numpy(labels), torch.from_numpy(maps)[:, None], torch.from_numpy(masks)[:, None]
    )
    assert as_255 == expected
    assert as_torch == expected
    # half-precision maps (AMP) are widened exactly to float32, bfloat16 included (numpy has none)
    half = torch.from_numpy(maps).to(torch.bfloat16)
    as_bf16 = compute_metrics(scores, labels, half, masks)
    assert as_bf16 == compute_metrics(scores, labels, half.float().numpy(), masks)


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    masks = make_masks(rng, n=4, size=12)
    maps = make_maps(rng, masks)
    labels = masks.any(axis=(1, 2)).astype(int)
    return maps.max(axis=(1, 2)), labels, maps, masks


def _raises(match: str, *args: object, **kwargs: object) -> str:
    with pytest.raises(MetricsError, match=match) as info:
        compute_metrics(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ValueError)
    return message


def test_errors_name_the_value_at_fault() -> None:
    scores, labels, maps, masks = _case()
    _raises(r"no defective image \(all 4 are 0\)", scores, np.zeros(4), maps, masks)
    _raises(r"no good image \(all 4 are 1\)", scores, np.ones(4), maps, masks)
    _raises("masks have no defect pixel", scores, labels, maps, np.zeros_like(masks))
    _raises("masks have no defect-free pixel", scores, labels, maps, np.ones_like(masks))
    _raises(r"\(4, 12, 12\) and masks shape \(4, 12, 11\) differ", scores, labels, maps, masks[:, :, :11])
    _raises(r"image_scores length 4 and image_labels length 3 differ", scores, labels[:3], maps, masks)
    _raises(r"anomaly_maps has 3 images but image_scores has 4", scores, labels, maps[:3], masks[:3])
    _raises(r"anomaly_maps must have 3 axes, got shape \(48, 12\)", scores, labels, maps.reshape(48, 12), masks)
    _raises("image_labels must be 0 / 1, got value 2", scores, np.array([0, 1, 2, 1]), maps, masks)
    _raises(r"fpr_limit must be in \(0, 1\], got 0", scores, labels, maps, masks, fpr_limit=0)
    _raises(r"fpr_limit must be in \(0, 1\], got 1.5", scores, labels, maps, masks, fpr_limit=1.5)

    bad_maps = maps.copy()
    bad_maps[0, 0, :2] = np.nan
    bad_maps[1, 0, 0] = np.inf
    _raises(r"anomaly_maps has 3 non-finite values \(NaN or inf\) out of 576", scores, labels, bad_maps, masks)
    bad_scores = scores.copy()
    bad_scores[2] = -np.inf
    _raises(r"image_scores has 1 non-finite values", bad_scores, labels, maps, masks)


def test_pro_score_and_f1_errors() -> None:
    _, _, maps, masks = _case()
    with pytest.raises(MetricsError, match="masks have no defect pixel"):
        pro_score(maps, np.zeros_like(masks))
    with pytest.raises(MetricsError, match=r"fpr_limit must be in \(0, 1\], got nan"):
        pro_score(maps, masks, fpr_limit=float("nan"))
    with pytest.raises(MetricsError, match="labels are all 0"):
        f1_max([0.1, 0.2], [0, 0])
    with pytest.raises(MetricsError, match="scores length 3 and labels length 2 differ"):
        f1_max([0.1, 0.2, 0.3], [0, 1])
