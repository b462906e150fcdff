"""The leaderboard: exact numbers from hand-made runs, every output format, and one real MLflow store end to end."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Optional

import pandas as pd
import pytest
from rich.table import Table
from typer.testing import CliRunner

from masf.report import store as board_store
from masf.report import leaderboard as lb
from masf.cli.main import app
from masf.fingerprint import variant_fingerprint
from masf.config.readings import DEFAULT_READING

# image AUROC of each finished trial (seed 0, seed 1); "F" = failed, None = never started
PLAN = {
    ("bottle", "full"): (0.99, 0.97), ("carpet", "full"): (0.90, 0.94), ("wood", "full"): (0.80, "F"),
    ("bottle", "no_sdm"): (0.95, 0.93), ("carpet", "no_sdm"): (0.88, 0.90), ("wood", "no_sdm"): ("F", None),
    ("bottle", "patchcore"): (0.96, 0.96), ("carpet", "patchcore"): (0.85, 0.87), ("wood", "patchcore"): (None, None),
}
OFFSETS = {"image_auroc": 0.0, "pixel_auroc": -0.02, "pro": -0.10, "image_ap": -0.01}
BEST_GAIN = 0.01  # best_on_test = last + 0.01


def make_run(category: str, variant: str, seed: int, auroc, t: int, sweep: str = "sw-1") -> dict:
    run = {"run_id": f"{category}-{variant}-{seed}-{t}", "start_time": t, "tag:masf.sweep": sweep,
           "tag:masf.trial_key": f"{category}/{variant}/seed{seed}", "tag:category": category, "tag:variant": variant,
           "tag:seed": str(seed), "tag:preset": "smoke", "tag:variant_fingerprint": variant_fingerprint(variant),
           "tag:method": "patchcore" if variant == "patchcore" else "masf", "tag:reading": DEFAULT_READING}
    if auroc == "F":
        return {**run, "status": "FAILED", "tag:masf.error": "CUDA out of memory\nTraceback (most recent call last): ..."}
    run["status"] = "FINISHED"
    for selection, gain in (("last", 0.0), ("best_on_test", BEST_GAIN)):
        run.update({f"{selection}/{m}": auroc + off + gain for m, off in OFFSETS.items()})
    if variant != "patchcore":
        run["student_only/image_auroc"] = auroc - 0.2  # the student's maps alone
    skipped = 12.0 if (category, variant, seed) == ("carpet", "full", 0) else 0.0
    return {**run, "skipped_batches": skipped, "total_batches": 0.0 if variant == "patchcore" else 40.0, "best_epoch": 3.0}


@pytest.fixture
def runs() -> list[dict]:
    out, t = [], 1000
    for (category, variant), seeds in PLAN.items():
        for seed, auroc in enumerate(seeds):
            if auroc is not None:
                t += 1
                out.append(make_run(category, variant, seed, auroc, t))
    return out


@pytest.fixture
def df(runs) -> pd.DataFrame:
    return lb.runs_frame(runs)


def test_runs_frame_one_row_per_trial_with_missing(df):
    assert len(df) == 18  # 3 categories x 3 variants x 2 seeds, the 3 never-started trials as 'missing'
    assert df.seed.dtype.kind == "i"
    status = df.set_index("trial_key").status
    assert status["wood/full/seed1"] == "failed" and status["wood/no_sdm/seed1"] == "missing"
    assert (status == "missing").sum() == 3 and (status == "failed").sum() == 2
    assert df.set_index("trial_key").error["wood/full/seed1"] == "CUDA out of memory"
    assert df[df.status != "finished"]["last/image_auroc"].isna().all()  # never a zero
    assert list(df.variant.unique()) == ["full", "no_sdm", "patchcore"]  # registry order


def test_runs_frame_dedup_and_sweep_choice(runs):
    retry = {**make_run("bottle", "full", 0, "F", 5000)}  # a newer failed run of a key that finished
    rerun = make_run("bottle", "full", 1, 0.50, 6000)  # a newer finished run replaces the older one
    other = [make_run("bottle", "full", 0, 0.10, 100, sweep="sw-old")]
    df = lb.runs_frame(runs + [retry, rerun] + other)
    row = df.set_index("trial_key").loc
    assert row["bottle/full/seed0", "status"] == "finished" and row["bottle/full/seed0", "last/image_auroc"] == pytest.approx(0.99)
    assert row["bottle/full/seed1", "last/image_auroc"] == pytest.approx(0.50)
    assert df.attrs["sweeps"] == ["sw-1"] and df.attrs["all_sweeps"] == ["sw-1", "sw-old"]
    assert "newest of 2 in the experiment" in lb.category_table(df).attrs["caption"]
    old = lb.runs_frame(runs + other, sweep="sw-old")
    assert list(old.trial_key) == ["bottle/full/seed0"] and old["last/image_auroc"].iloc[0] == pytest.approx(0.10)
    other.append({**make_run("zipper", "full", 0, 0.70, 200, sweep="sw-old"), "tag:preset": "paper"})
    merged = lb.runs_frame(runs + other, sweep=lb.ALL_SWEEPS)
    assert merged.set_index("trial_key").loc["bottle/full/seed0", "last/image_auroc"] == pytest.approx(0.99)
    assert len(merged) == 19 and merged.set_index("trial_key").loc["zipper/full/seed0", "preset"] == "paper"
    assert "mixed presets: paper, smoke" in lb.category_table(merged).attrs["caption"]
    with pytest.raises(lb.LeaderboardError, match=r"^no trial runs of sweep 'nope' \(sweeps here: sw-1, sw-old\)$"):
        lb.runs_frame(runs + other, sweep="nope")


def test_expected_plan_marks_unstarted_seeds(runs):
    plan = lb.planned_from_params({"categories": "bottle,carpet,wood", "variants": "full", "seeds": "0,1,2"})
    assert len(plan) == 9 and ("wood", "full", 2) in plan
    nums = lb.category_numbers(lb.runs_frame(runs, expected=plan), "full")
    assert nums.loc["bottle", "seeds_planned"] == 3 and nums.loc["bottle", "seeds_finished"] == 2
    assert "seed 2 missing" in nums.loc["bottle", "warnings"]


def test_load_frame_reads_the_sweeps_plan(tmp_path: Path):
    from masf.runner.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "X", "sw-plan").open(params={"categories": "bottle,zipper", "variants": "full", "seeds": "0"})
    with pytest.raises(lb.LeaderboardError, match=rf"^no trial runs in experiment 'X' of {uri}$"):
        board_store.load_frame(uri, "X")
    _log_trial(tracker, "bottle", "full", 0.9, False, time.time())
    assert tracker.flush() == 0
    df = board_store.load_frame(uri, "X")  # zipper was planned (parent-run params) but never started
    assert len(df) == 2 and (df[df.category == "zipper"].status == "missing").all()
    assert lb.category_table(df).loc["zipper", "image AUROC"] == "missing"


def test_category_table_numbers(df):
    nums = lb.category_numbers(df, "full")
    assert list(nums.index) == ["bottle", "carpet", "wood", "mean"]
    assert nums.loc["bottle", "image_auroc_mean"] == pytest.approx(98.0)
    assert nums.loc["bottle", "image_auroc_std"] == pytest.approx(math.sqrt(2.0))  # sample std of 99, 97
    assert nums.loc["carpet", "pro_mean"] == pytest.approx(82.0) and nums.loc["carpet", "pro_std"] == pytest.approx(math.sqrt(8.0))
    assert nums.loc["wood", "image_auroc_mean"] == pytest.approx(80.0) and math.isnan(nums.loc["wood", "image_auroc_std"])
    assert nums.loc["mean", "image_auroc_mean"] == pytest.approx((98 + 92 + 80) / 3)
    assert nums.loc["mean", "pixel_auroc_mean"] == pytest.approx((96 + 90 + 78) / 3)
    table = lb.category_table(df, "full")
    assert table.loc["bottle", "image AUROC"] == "98.00 ± 1.41"
    assert table.loc["wood", "image AUROC"] == "80.00" and table.loc["wood", "seeds"] == "1/2"
    assert table.loc["wood", "warnings"] == "seed 1 failed: CUDA out of memory"
    assert table.loc["carpet", "warnings"] == "skipped 12/80 batches (non-finite loss)"  # summed over seeds
    assert table.loc["bottle", "warnings"] == ""
    assert table.loc["mean", "image AUROC"] == "90.00" and table.loc["mean", "seeds"] == "5/6"
    assert "Selection: last epoch (headline)" in table.attrs["caption"] and "values in %" in table.attrs["caption"]


def test_failed_and_missing_are_shown_and_excluded(df):
    table = lb.category_table(df, "no_sdm")
    assert (table.loc["wood", [lb.METRICS[m] for m in lb.DEFAULT_METRICS]] == "failed").all()
    assert table.loc["wood", "seeds"] == "0/2"
    assert table.loc["wood", "warnings"] == "seed 0 failed: CUDA out of memory; seed 1 missing"
    assert table.loc["mean", "image AUROC"] == "91.50"  # (94 + 89) / 2: wood left out, not averaged as 0
    assert table.loc["mean", "warnings"] == "mean over 2 of 3 categories (excluded: wood)"
    pc = lb.category_table(df, "patchcore")
    assert (pc.loc["wood", [lb.METRICS[m] for m in lb.DEFAULT_METRICS]] == "missing").all()
    assert pc.loc["bottle", "image AUROC"] == "96.00 ± 0.00"
    assert not any("0.00 ±" in c or c == "0.00" for c in pc.to_numpy().ravel())


def test_ablation_table_delta_against_full(df):
    nums = lb.ablation_numbers(df)
    assert list(nums.index) == ["full", "no_sdm", "patchcore"]
    assert nums.loc["full", "image_auroc"] == pytest.approx(90.0) and nums.loc["full", "delta_image_auroc"] == 0.0
    assert nums.loc["no_sdm", "image_auroc"] == pytest.approx(91.5)
    assert nums.loc["no_sdm", "delta_image_auroc"] == pytest.approx(((94 - 98) + (89 - 92)) / 2)  # paired over bottle, carpet
    # paired by seed: seed 0 (95-99, 88-90) -> -3, seed 1 (93-97, 90-94) -> -4; t(0.975, 1) = 12.7062 (tables)
    half = 12.7062047 * math.sqrt(0.5) / math.sqrt(2)
    assert nums.loc["no_sdm", "low_image_auroc"] == pytest.approx(-3.5 - half, abs=1e-4)
    assert nums.loc["no_sdm", "high_image_auroc"] == pytest.approx(-3.5 + half, abs=1e-4)
    assert nums.loc["no_sdm", "interval"] == "t over 2 seeds" and not nums.loc["no_sdm", "excludes0_image_auroc"]
    assert nums.loc["patchcore", "delta_pro"] == pytest.approx(((86 - 88) + (76 - 82)) / 2)
    assert nums.loc["no_sdm", "categories"] == 2 and nums.loc["no_sdm", "categories_planned"] == 3
    assert bool(nums.loc["patchcore", "baseline"]) and not bool(nums.loc["no_sdm", "baseline"])
    table = lb.ablation_table(df)
    assert list(table.index) == ["full", "no_sdm", "patchcore (baseline)"]
    assert table.loc["no_sdm", "Δ image AUROC"] == "-3.50 [-9.85, +2.85]" and table.loc["full", "Δ image AUROC"] == "—"
    assert table.loc["no_sdm", "categories"] == "2/3"
    assert "lacks wood (full has it); Δ over 2 shared categories" in table.loc["no_sdm", "notes"]
    assert "incomplete seeds in wood" in table.loc["full", "notes"]
    assert "baseline, not a MASF ablation" in table.loc["patchcore (baseline)", "notes"]


def test_best_on_test_is_labelled_test_selected(df):
    nums = lb.category_numbers(df, "full", "best_on_test")
    assert nums.loc["mean", "image_auroc_mean"] == pytest.approx((99 + 93 + 81) / 3)
    md = lb.format_table(lb.category_table(df, "full", "best_on_test"), "md", lb.category_title("full", "best_on_test"))
    assert "test-selected (paper protocol)" in md.splitlines()[0] and "Selection: test-selected (paper protocol)" in md
    with pytest.raises(lb.LeaderboardError, match=r"^--selection: expected one of last, best_on_val, best_on_test, got 'best'$"):
        lb.category_table(df, "full", "best")
    with pytest.raises(lb.LeaderboardError, match=r"^no trials of variant 'no_ttsa' \(variants here: full, no_sdm, patchcore\)$"):
        lb.category_table(df, "no_ttsa")


def test_formats(df):
    table = lb.category_table(df, "full")
    md = lb.format_table(table, "md", "Full")
    lines = md.splitlines()
    assert lines[0] == "### Full" and lines[2].startswith("_Selection: last epoch (headline).")
    assert lines[4] == "| category | image AUROC | pixel AUROC | PRO | image AP | student-only image AUROC | seeds | warnings |"
    assert "| bottle | 98.00 ± 1.41 | 96.00 ± 1.41 | 88.00 ± 1.41 | 97.00 ± 1.41 | 78.00 ± 1.41 | 2/2 |  |" in lines
    back = pd.read_csv(io.StringIO(lb.format_table(table, "csv", "Full")), index_col=0)
    pd.testing.assert_frame_equal(back[[c for c in back if c.endswith(("_mean", "_std"))]],
                                  table.attrs["numbers"][[c for c in back if c.endswith(("_mean", "_std"))]].astype(float),
                                  check_names=False)
    assert back.loc["carpet", "skipped_batches"] == 12 and back.loc["wood", "seeds_finished"] == 1
    abl = pd.read_csv(io.StringIO(lb.format_table(lb.ablation_table(df), "csv", "A")), index_col=0)
    assert abl.loc["no_sdm", "delta_image_auroc"] == pytest.approx(-3.5)
    latex = lb.format_table(lb.ablation_table(df), "latex", "Ablation of my_sweep")
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert r"no\_sdm &" in latex and r"my\_sweep" in latex and "values in \\%" in latex
    assert "no_sdm" not in latex.replace(r"no\_sdm", "")
    assert r"\begin{tabular}{lrrrrrrrrrrll}" in latex
    assert isinstance(lb.format_table(table, "table", "Full"), Table)
    with pytest.raises(lb.LeaderboardError, match=r"^--format: expected one of table, md, csv, latex, got 'html'$"):
        lb.format_table(table, "html", "Full")


def test_category_bars_png(df, tmp_path: Path):
    from masf.report.figures import category_bars

    path = category_bars(df, tmp_path / "figs" / "bars.png", "best_on_test", "pro")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_cli_rejects_bad_options_in_one_line(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["leaderboard", "--selection", "best"])
    assert result.exit_code == 1 and str(result.exception) == "--selection: expected one of last, best_on_val, best_on_test, got 'best'"
    result = runner.invoke(app, ["leaderboard", "--format", "html"])
    assert result.exit_code == 1 and str(result.exception) == "--format: expected one of table, md, csv, latex, got 'html'"
    result = runner.invoke(app, ["leaderboard", "--metrics", "image_auroc,iou"])
    assert result.exit_code == 1 and str(result.exception).startswith("--metrics: unknown metric 'iou' (expected default, ader or some of image_auroc,")
    result = runner.invoke(app, ["leaderboard", "--tables", "category,speed"])
    assert result.exit_code == 1 and str(result.exception) == "--tables: expected one of category, ablation, paired, efficiency, got 'speed'"
    store = tmp_path / "none" / "mlflow.db"
    result = runner.invoke(app, ["leaderboard", "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 1 and str(result.exception).startswith(f"no MLflow store at {store}")
    assert not store.exists()


# ------------------------------------------------------------------ end to end with a real MLflow store


def _record_file(folder: Path, key: str, shift: float) -> str:
    """A per-image test record (masf/records.py) of 12 images, the defective ones scored ``shift`` higher."""
    import numpy as np

    from masf.records import save_statistics, test_statistics

    rng = np.random.default_rng(len(key))
    labels = np.array([0] * 6 + [1] * 6)
    masks = np.zeros((12, 16, 16))
    masks[6:, 4:9, 4:9] = 1
    maps = rng.random((12, 16, 16)) + shift * masks
    rec = test_statistics(maps.max(axis=(1, 2)) + shift * labels * rng.random(12), labels, maps, masks,
                          images=[f"img{i}.png" for i in range(12)])
    path = folder / key.replace("/", "_") / "test_stats.npz"
    path.parent.mkdir(parents=True)
    save_statistics(path, {"last": rec})
    return str(path)


def _log_trial(tracker, category: str, variant: str, auroc: float, fail: bool, t0: float, records: Optional[Path] = None) -> None:
    key = f"{category}/{variant}/seed0"
    tags = {"category": category, "variant": variant, "seed": "0", "preset": "smoke", "backbone": "resnet18", "weights_source": "none",
            "variant_fingerprint": variant_fingerprint(variant), "method": "masf", "reading": DEFAULT_READING}
    tracker.submit({"kind": "trial_start", "trial": key, "tags": tags, "params": {"train.seed": 0}, "time": t0})
    for epoch in (1, 2):
        tracker.submit({"kind": "epoch", "trial": key, "step": epoch, "time": t0 + epoch, "tags": {"device": "cpu"},
                        "metrics": {"loss": 1.0 / epoch, "skipped_batches": 3 - epoch, "batches": 5, "image_auroc": auroc}})
    if fail:
        tracker.submit({"kind": "trial_failed", "trial": key, "error": "RuntimeError: boom", "tags": tags, "time": t0 + 3})
        return
    final = {**{f"last/{m}": auroc + off for m, off in OFFSETS.items()},
             **{f"best_on_test/{m}": auroc + off + BEST_GAIN for m, off in OFFSETS.items()},
             **{f"best_on_val/{m}": auroc + off + BEST_GAIN / 2 for m, off in OFFSETS.items()},
             "student_only/image_auroc": auroc - 0.3, "best_epoch": 2, "skipped_batches_total": 3, "total_batches": 10}
    artifacts = [(_record_file(records, key, auroc), "")] if records is not None else []
    tracker.submit({"kind": "trial_end", "trial": key, "step": 2, "metrics": final, "tags": tags, "time": t0 + 4, "artifacts": artifacts})


@pytest.mark.slow
def test_end_to_end_mlflow_store(tmp_path: Path):
    from masf.runner.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "X", "smoke-e2e").open(params={"categories": "bottle,carpet", "variants": "full,no_sdm", "seeds": "0"})
    t0 = time.time()
    for i, (category, variant, auroc, fail) in enumerate([("bottle", "full", 0.98, False), ("carpet", "full", 0.90, False),
                                                          ("bottle", "no_sdm", 0.94, False), ("carpet", "no_sdm", 0.0, True)]):
        _log_trial(tracker, category, variant, auroc, fail, t0 + 10 * i, records=tmp_path / "records")
    assert tracker.flush() == 0

    result = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", uri, "--experiment", "X", "--format", "md"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "### full: per-category results, last epoch" in out and "### Ablation: variants averaged over categories, last epoch" in out
    assert "| bottle | 98.00 | 96.00 | 88.00 | 97.00 | 68.00 | 1/1 | skipped 3/10 batches (non-finite loss) |" in out
    assert "| mean | 94.00 | 92.00 | 84.00 | 93.00 | 64.00 | 2/2 | mean over 2 of 2 categories |" in out
    # Δ over bottle only; one seed: the interval is a paired bootstrap over the test images of the logged records
    row = next(line for line in out.splitlines() if line.startswith("| no_sdm |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "94.00" and cells[2].startswith("-4.00 [") and cells[9] == "64.00" and cells[10] == "1/2"
    assert cells[11].startswith("bootstrap over test images, 1 seed")
    assert "sweep smoke-e2e" in out

    result = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", uri, "-e", "X", "--format", "md", "--variant", "no_sdm",
                                      "--selection", "best_on_test", "--figure", str(tmp_path / "bars.png")])
    assert result.exit_code == 0, result.output
    assert "| carpet | failed | failed | failed | failed | failed | 0/1 | seed 0 failed: RuntimeError: boom |" in result.output
    assert "| bottle | 95.00 | 93.00 | 85.00 | 94.00 | 64.00 | 1/1 |" in result.output and "test-selected (paper protocol)" in result.output
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"

    result = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", uri, "-e", "X", "--format", "md", "--selection", "best_on_val"])
    assert result.exit_code == 0, result.output
    assert "| bottle | 98.50 | 96.50 | 88.50 | 97.50 | 68.00 | 1/1 |" in result.output and "validation-selected" in result.output

    result = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", uri, "--experiment", "Y"])
    assert result.exit_code == 1 and str(result.exception) == f"no MLflow experiment 'Y' in {uri}"

    paths = board_store.write_sweep_leaderboard(uri, "X", tmp_path / "board", sweep="smoke-e2e")
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "category_bars.png", "paired_differences.png", "pro_curves.png"]
    md = paths[0].read_text()
    assert "## last epoch (headline)" in md and "## validation-selected" in md and "## test-selected (paper protocol)" in md
    trials = pd.read_csv(paths[1]).set_index("trial_key")
    assert trials.loc["bottle/full/seed0", "last/image_auroc"] == pytest.approx(0.98)
    assert trials.loc["bottle/full/seed0", "skipped_batches"] == 3  # the final total, not the last epoch's count
    assert trials.loc["carpet/no_sdm/seed0", "status"] == "failed" and math.isnan(trials.loc["carpet/no_sdm/seed0", "last/image_auroc"])


def test_runs_of_another_reading_are_their_own_rows_and_compare_within_their_reading():
    runs = [make_run(c, v, s, a, 1) for (c, v), (a, b) in PLAN.items() for s, x in ((0, a), (1, b)) if x not in (None, "F")
            and isinstance(x, float) and (c, v) != ("wood", "full")]
    spec = [{**make_run("bottle", v, 0, 0.5 if v == "full" else 0.6, 2), "tag:reading": "spec"} for v in ("full", "no_sdm")]
    untagged = {k: v for k, v in make_run("carpet", "full", 0, 0.7, 3).items() if k != "tag:reading"}  # older runs
    df = lb.runs_frame(runs + spec + [untagged])
    assert {"full [spec]", "no_sdm [spec]", "full", "no_sdm", "patchcore"} <= set(df.variant)
    assert df.set_index("trial_key").loc["carpet/full/seed0"].variant.tolist().count("full [spec]") == 1  # untagged: spec
    nums = lb.ablation_numbers(df)
    # the spec-reading no_sdm is compared with the spec-reading full: 60 - 50 = +10 points on bottle
    assert abs(nums.loc["no_sdm [spec]", "delta_image_auroc"] - 10.0) < 1e-6
    assert "patchcore [spec]" not in set(df.variant)  # a baseline has no reading
