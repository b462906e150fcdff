"""Paired statistics, the field's extra metrics, the paper's figures and per-trial peak memory, against hand-computed cases."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from masf.report import leaderboard as lb
from masf.report import paper
from masf import records
from masf.report import intervals
from masf.fingerprint import variant_fingerprint
from masf.trial.memory import PeakMemory
from masf.metrics import IOU_THRESHOLDS, MAD_TERMS, compute_metrics, mad, pixel_iou_max
from masf.config.readings import DEFAULT_READING

PAPER_TEXT = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_4305ed01614c4c02.txt"


# ------------------------------------------------------------------ intervals


def test_t_interval_matches_a_hand_computed_case():
    # d = 1, 2, 4: mean 7/3, sample sd sqrt(7/3), t(0.975, 2) = 4.302653 (tables); half = t * sd / sqrt(3)
    mean, low, high = intervals.t_interval([1.0, 2.0, 4.0])
    half = 4.302653 * math.sqrt(7.0 / 3.0) / math.sqrt(3.0)
    assert mean == pytest.approx(7.0 / 3.0)
    assert (low, high) == (pytest.approx(7.0 / 3.0 - half, abs=1e-5), pytest.approx(7.0 / 3.0 + half, abs=1e-5))
    assert math.isnan(intervals.t_interval([1.5])[1]) and intervals.t_interval([1.5])[0] == 1.5  # one difference: no interval
    assert intervals.excludes_zero(0.1, 2.0) and intervals.excludes_zero(-2.0, -0.1) and not intervals.excludes_zero(-0.1, 2.0)
    assert not intervals.excludes_zero(math.nan, 1.0)


def _record(scores, labels, maps, masks):
    return records.test_statistics(np.asarray(scores, float), np.asarray(labels), np.asarray(maps, float), np.asarray(masks, float),
                              images=[f"i{k}.png" for k in range(len(labels))])


def test_paired_bootstrap_matches_the_enumerated_distribution():
    # one good image g and two defective a, b; a stratified draw keeps g and draws {a,a}, {a,b}, {b,b}
    # with probabilities 1/4, 1/2, 1/4. Variant A scores g 0.5, a 0.9, b 0.1: image AUROC 1, 0.5, 0 per draw;
    # variant B scores a and b 0.9: always 1. A - B: 0, -0.5, -1; the exact difference (each image once) is -0.5.
    labels = [0, 1, 1]
    masks = np.zeros((3, 4, 4))
    masks[1:, 1:3, 1:3] = 1
    maps = np.random.default_rng(0).random((3, 4, 4)) + masks
    a, b = _record([0.5, 0.9, 0.1], labels, maps, masks), _record([0.5, 0.9, 0.9], labels, maps, masks)
    w = intervals.bootstrap_weights(a["label"], draws=4000, seed=1)
    assert (w[:, 0] == 1).all() and (w.sum(axis=1) == 3).all()  # the good image is drawn alone, once
    assert np.mean(w[:, 1] == 1) == pytest.approx(0.5, abs=0.03)  # {a, b}
    exact_a = compute_metrics([0.5, 0.9, 0.1], labels, maps, masks)
    exact_b = compute_metrics([0.5, 0.9, 0.9], labels, maps, masks)
    assert exact_a["image_auroc"] == 0.5 and exact_b["image_auroc"] == 1.0
    d, low, high = intervals.paired_bootstrap([(a, b, exact_a, exact_b)], ["image_auroc"], draws=4000)["image_auroc"]
    assert (d, low, high) == (-0.5, -1.0, 0.0)  # 25 % of the mass at -1 and at 0: the 2.5 / 97.5 % quantiles


def test_records_recompute_the_exact_metrics():
    rng = np.random.default_rng(3)
    n, size = 30, 48
    labels = np.array([0] * 12 + [1] * 18)
    masks = np.zeros((n, size, size))
    for i in range(12, n):
        y, x = rng.integers(0, size - 12, 2)
        masks[i, y:y + rng.integers(2, 12), x:x + rng.integers(2, 12)] = 1
    maps = rng.normal(size=(n, size, size)) + 1.5 * masks
    scores = maps.max(axis=(1, 2)) + 0.5 * labels * rng.random(n)
    exact = compute_metrics(scores, labels, maps, masks)
    again = records.metrics_from_statistics(_record(scores, labels, maps, masks))
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_iou_max"):  # image level and IoU counts: exact
        assert again[key][0] == pytest.approx(exact[key], abs=1e-9), key
    for key in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pro", "mad"):  # pixel scores resolved to 512 bins
        assert again[key][0] == pytest.approx(exact[key], abs=5e-3), key


def test_records_of_other_images_do_not_pair():
    masks = np.zeros((2, 4, 4))
    masks[1, 1, 1] = 1
    a = _record([0.1, 0.9], [0, 1], masks, masks)
    b = dict(a, images=np.asarray(["x.png", "y.png"]))
    with pytest.raises(records.StatsError, match="not scored on the same test images"):
        records.check_pair(a, b, "bottle")


def test_leaderboard_bootstrap_with_one_seed_uses_the_records():
    masks = np.zeros((3, 4, 4))
    masks[1:, 1:3, 1:3] = 1
    maps = np.random.default_rng(0).random((3, 4, 4)) + masks
    recs = {"r-full": _record([0.5, 0.9, 0.9], [0, 1, 1], maps, masks), "r-ab": _record([0.5, 0.9, 0.1], [0, 1, 1], maps, masks)}
    runs = [_run("bottle", "full", 0, 1.0, "r-full"), _run("bottle", "no_sdm", 0, 0.5, "r-ab")]
    nums = lb.ablation_numbers(lb.runs_frame(runs), records=lambda rid, sel: recs.get(rid))
    assert nums.loc["no_sdm", "interval"].startswith("bootstrap over test images, 1 seed")
    assert nums.loc["no_sdm", ["delta_image_auroc", "low_image_auroc", "high_image_auroc"]].tolist() == pytest.approx([-50.0, -100.0, 0.0])
    plain = lb.ablation_numbers(lb.runs_frame(runs))  # no records: the difference alone
    assert plain.loc["no_sdm", "delta_image_auroc"] == pytest.approx(-50.0) and math.isnan(plain.loc["no_sdm", "low_image_auroc"])


# ------------------------------------------------------------------ IoU-max and mAD


def _iou_max_by_definition(maps: np.ndarray, masks: np.ndarray) -> float:
    """ADer's definition written out: normalise over the split, 21 thresholds, pooled IoU, the best."""
    norm = (maps - maps.min()) / (maps.max() - maps.min())
    gt = masks > 0
    best = 0.0
    for k in range(21):
        pred = norm > k * 0.05
        union = np.logical_or(gt, pred).sum()
        best = max(best, np.logical_and(gt, pred).sum() / union if union else 0.0)
    return float(best)


def test_iou_max_matches_its_definition():
    rng = np.random.default_rng(7)
    masks = np.zeros((6, 20, 20))
    masks[2:, 5:12, 6:10] = 1
    maps = rng.random((6, 20, 20)) + 0.8 * masks
    assert pixel_iou_max(maps, masks) == pytest.approx(_iou_max_by_definition(maps, masks), abs=1e-12)
    assert len(IOU_THRESHOLDS) == 21 and IOU_THRESHOLDS[1] == 0.05
    # a hand case: defect pixels score 1, the rest 0, but one defect-free pixel also 1 -> IoU 4 / 5 at every t < 1
    masks = np.zeros((1, 3, 3))
    masks[0, :2, :2] = 1
    maps = masks.copy()
    maps[0, 2, 2] = 1.0
    assert pixel_iou_max(maps, masks) == pytest.approx(0.8)


def test_mad_is_aders_mean_of_seven():
    # ADer's benchmark table, MVTec AD 100 epochs, DRAEM and SimpleNet rows: the seven metrics and their mAD as printed
    draem = dict(zip(MAD_TERMS, (54.5, 76.3, 83.6, 47.6, 3.2, 6.7, 14.3)))  # IoU-max 3.5 is not in mAD
    simplenet = dict(zip(MAD_TERMS, (95.4, 98.3, 95.7, 96.8, 48.8, 51.9, 86.9)))
    assert round(mad(draem), 1) == 40.9 and round(mad(simplenet), 1) == 82.0
    assert MAD_TERMS == ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro")
    masks = np.zeros((4, 8, 8))
    masks[2:, 2:5, 2:5] = 1
    maps = np.random.default_rng(1).random((4, 8, 8)) + masks
    m = compute_metrics(maps.max(axis=(1, 2)), [0, 0, 1, 1], maps, masks)
    assert m["mad"] == pytest.approx(sum(m[k] for k in MAD_TERMS) / 7)


# ------------------------------------------------------------------ the paper's figures


def _run(category, variant, seed, auroc, run_id, dataset=""):
    return {"run_id": run_id, "start_time": 1000 + seed, "status": "FINISHED", "tag:masf.sweep": "s",
            "tag:masf.trial_key": f"{category}/{variant}/seed{seed}", "tag:category": category, "tag:variant": variant,
            "tag:seed": str(seed), "tag:preset": "cpu", "tag:variant_fingerprint": variant_fingerprint(variant),
            "tag:method": "patchcore" if variant == "patchcore" else "masf", "tag:reading": DEFAULT_READING, "tag:dataset": dataset,
            **{f"last/{m}": auroc for m in lb.METRICS}}


def _paper_rows(caption: str) -> list[list[str]]:
    text = PAPER_TEXT.read_text()
    block = text[text.index(caption):].split("\n\n")[1:3]
    return [line.split("\t") for line in "\n".join(block).splitlines() if "\t" in line]


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason="the paper's text (../shared/seed) is not beside this checkout")
def test_the_figures_in_code_are_the_papers_tables():
    number = lambda cell: None if cell.strip() in ("—", "") else float(cell)  # noqa: E731
    rows = {r[0].replace(" †", "").strip().lower().replace(" ", "_"): r for r in _paper_rows("Table 3. MASF results")}
    assert set(rows) - {"category"} == set(paper.TABLE_3)
    for cat, values in paper.TABLE_3.items():
        assert values == tuple(number(c) for c in rows[cat][2:6]), cat
    rows4 = {re.sub(r" ‡$", "", r[0]).strip(): r for r in _paper_rows("Table 4. Ablation study")}
    for name, (_variant, img, pix, pro, combined, measured) in paper.TABLE_4.items():
        assert (img, pix, pro, combined) == tuple(number(c) for c in rows4[name][1:5]), name
        assert measured == ("‡" in next(r[0] for r in _paper_rows("Table 4. Ablation study") if r[0].startswith(name)))
    rows1 = {r[0].split(" [")[0].replace(" (Ours)", "").strip(): r for r in _paper_rows("Table 1. Quantitative comparison")}
    for method, values in paper.TABLE_1.items():
        assert values == tuple(number(c) for c in rows1[method][1:5]), method


def test_the_table_shows_the_papers_figures_only_for_declared_mvtec_ad():
    runs = [_run(c, v, 0, 0.9, f"{c}-{v}", dataset="mvtec_ad") for c in ("bottle", "cable") for v in ("full", "no_amfd", "patchcore")]
    df = lb.runs_frame(runs)
    table = lb.category_table(df, "full", paper=True)
    for cat in ("bottle", "cable"):
        for m, value in zip(paper.PAPER_METRICS, paper.TABLE_3[cat]):  # read from the one place, masf/report/paper.py
            assert table.loc[cat, f"{lb.METRICS[m]} reported"] == f"{value:.2f}"
            assert table.loc[cat, f"Δ {lb.METRICS[m]} vs reported"] == f"{90.0 - value:+.2f}"
        assert table.loc[cat, "reported in"] == "Table 3"
    amfd = lb.category_table(df, "no_amfd", paper=True)
    assert amfd.loc["bottle", "reported in"] == "Table 4 (paper estimate)" and amfd.loc["cable", "reported in"] == ""
    assert amfd.loc["bottle", "PRO reported"] == f"{paper.TABLE_4['w/o Freq. Masking (AMFD)'][3]:.2f}"
    assert lb.category_table(df, "patchcore", paper=True).loc["bottle", "image AUROC reported"] == f"{paper.TABLE_1['PatchCore'][0]:.2f}"
    # Table 4 beside the ablation table: only on bottle alone
    abl = lb.ablation_table(lb.runs_frame([r for r in runs if r["tag:category"] == "bottle"]), paper=True)
    assert abl.loc["no_amfd", "pixel AUROC reported"] == "97.14" and abl.loc["no_amfd", "reported in"] == "Table 4 (paper estimate)"
    assert abl.loc["full", "reported in"] == "Table 4" and abl.loc["patchcore (baseline)", "reported in"] == "Table 1 (PatchCore)"
    # the synthetic default's "bottle" is not MVTec AD's: no reported column, and the caption says why
    synthetic = lb.runs_frame([_run("bottle", "full", 0, 0.9, "syn")])
    plain = lb.category_table(synthetic, "full", paper=True)
    assert not any("reported" in c for c in plain.columns) and "not declared MVTec AD" in plain.attrs["caption"]
    assert paper.dataset_name("MVTec-AD") == paper.MVTEC_AD and paper.ablation_row("no_ttsa") is None


# ------------------------------------------------------------------ peak memory of one trial in a reused process


def test_peak_memory_is_per_trial_in_one_process():
    with PeakMemory() as first:
        big = np.ones(400 * 2**20 // 8)  # 400 MiB touched
        del big
        peak_first = first.result()["peak_rss_mb"]
    with PeakMemory() as second:
        small = np.ones(40 * 2**20 // 8)
        del small
        peak_second = second.result()["peak_rss_mb"]
    assert first.method in ("vmhwm", "sampled")
    assert peak_first - peak_second > 250  # the second trial does not inherit the first one's peak


def test_declaring_the_dataset_is_a_label_not_a_new_configuration():
    from masf.config import build_config
    from masf.fingerprint import config_fingerprint

    plain, declared = build_config("smoke", []), build_config("smoke", ["data.dataset=mvtec_ad"])
    assert declared.data.dataset == "mvtec_ad" and config_fingerprint(declared) == config_fingerprint(plain)


def test_the_paper_command_prints_the_figures_from_the_one_place():
    from typer.testing import CliRunner

    from masf.cli.main import app

    out = CliRunner().invoke(app, ["paper"])
    assert out.exit_code == 0, out.output
    assert "| screw | 37.90 | 94.19 | 78.18 | 67.98 |" in out.output and "| carpet † | 62.72 | 82.22 | 44.18 | 82.55 |" in out.output
    assert "| w/o SDM (spatial only) | no_sdm | 98.81 | 96.12 | 91.04 | 97.02 | no (paper estimate) |" in out.output
    assert "| MASF | 99.9999 | 98.53 | 94.61 | 99.9999 |" in out.output


def test_vectorised_pro_area_equals_the_scalar_one():
    """The bootstrap's PRO area over many curves at once equals metrics._area_to_limit on each, cut or not."""
    from masf.metrics import _area_to_limit
    from masf.records import _areas_to_limit

    rng = np.random.default_rng(0)
    for trial in range(60):
        k = int(rng.integers(2, 40))
        fpr = np.sort(rng.random((4, k)), axis=1) * (0.2 if trial % 3 == 0 else 1.0)  # some end before the limit
        fpr[:, 0] = 0.0
        pro = np.sort(rng.random((4, k)), axis=1)
        pro[:, 0] = 0.0
        for limit in (0.05, 0.3, 1.0):
            want = [_area_to_limit(f, p, limit) for f, p in zip(fpr, pro)]
            np.testing.assert_allclose(_areas_to_limit(fpr, pro, limit), want, rtol=0, atol=1e-12)


def test_the_bootstrap_in_threads_gives_the_numbers_of_one_thread(monkeypatch):
    """paired_bootstrap draws the categories in threads; the result is the sequential one, to the last digit."""
    rng = np.random.default_rng(5)
    pairs = []
    for c in range(3):
        labels = np.array([0, 0, 0, 1, 1, 1])
        masks = np.zeros((6, 8, 8))
        masks[3:, 2:5, 2:5] = 1
        recs = []
        for shift in (0.0, 0.3):
            maps = rng.random((6, 8, 8)) + shift * masks
            scores = maps.reshape(6, -1).max(axis=1)
            recs.append((_record(scores, labels, maps, masks), compute_metrics(scores, labels, maps, masks)))
        pairs.append((recs[1][0], recs[0][0], recs[1][1], recs[0][1]))
    keys = ["image_auroc", "pixel_auroc", "pro", "image_ap"]
    intervals._DRAWN.clear()
    threaded = intervals.paired_bootstrap(pairs, keys, draws=500)
    assert len(intervals._DRAWN) == 3  # a pair's draws, kept for the next selection of the same records
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(intervals, "ThreadPoolExecutor", lambda max_workers: ThreadPoolExecutor(max_workers=1))
    intervals._DRAWN.clear()
    assert intervals.paired_bootstrap(pairs, keys, draws=500) == threaded


def test_records_alike_share_their_draws_and_others_do_not():
    """A selection of the same epoch (records alike) reuses the pair's draws; another scoring gets its own."""
    labels = np.array([0, 0, 1, 1])
    masks = np.zeros((4, 6, 6))
    masks[2:, 1:4, 1:4] = 1
    maps = np.random.default_rng(7).random((4, 6, 6)) + 0.4 * masks
    scores = maps.reshape(4, -1).max(axis=1)
    rec, exact = _record(scores, labels, maps, masks), compute_metrics(scores, labels, maps, masks)
    alike = {k: np.copy(v) for k, v in rec.items()}  # another selection's copy of the same record
    other = _record(scores[::-1].copy(), labels, maps, masks)
    assert records.record_digest(rec) == records.record_digest(alike) != records.record_digest(other)
    intervals._DRAWN.clear()
    first = intervals.paired_bootstrap([(rec, other, exact, exact)], ["image_auroc"], draws=300)
    assert intervals.paired_bootstrap([(alike, other, exact, exact)], ["image_auroc"], draws=300) == first and len(intervals._DRAWN) == 1
    intervals.paired_bootstrap([(other, rec, exact, exact)], ["image_auroc"], draws=300)
    assert len(intervals._DRAWN) == 2
