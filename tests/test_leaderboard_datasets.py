"""The leaderboard over several datasets: numbers averaged within each dataset and never across, a block per
dataset in every table, MVTec LOCO's logical and structural image AUROC beside the overall one, the
per-defect-type table, and the dataset label of undeclared data."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from masf.cli.leaderboard import side_by_side
from masf.cli.main import app
from masf.config.readings import DEFAULT_READING
from masf.fingerprint import variant_fingerprint
from masf.report import leaderboard as lb

LOCO = {"logical_anomalies": -0.10, "structural_anomalies": +0.05}  # per-type image AUROC = overall + this


def make_run(dataset: str, category: str, variant: str, seed: int, auroc: float, t: int = 1, root: str = "",
             layout: str = "mvtec_ad", scoped: bool = True) -> dict:
    key = f"{dataset}/{category}/{variant}/seed{seed}" if scoped else f"{category}/{variant}/seed{seed}"
    run = {"run_id": f"{dataset}-{category}-{variant}-{seed}", "start_time": t, "status": "FINISHED", "tag:masf.sweep": "sw",
           "tag:masf.trial_key": key, "tag:category": category, "tag:variant": variant, "tag:seed": str(seed),
           "tag:variant_fingerprint": variant_fingerprint(variant), "tag:method": "patchcore" if variant == "patchcore" else "masf",
           "tag:reading": DEFAULT_READING, "tag:dataset": dataset, "tag:layout": layout, "tag:data_root": root or f"/data/{dataset}"}
    run.update({f"last/{m}": auroc + off for m, off in {"image_auroc": 0.0, "pixel_auroc": -0.02, "pro": -0.1, "image_ap": -0.01}.items()})
    if dataset == "mvtec_loco":
        for kind, off in LOCO.items():
            run[f"last/defect/{kind}/image_auroc"] = auroc + off
            run[f"last/defect/{kind}/pro"] = auroc + off - 0.2
    return run


# image AUROC per (dataset, category, variant): seeds 0 and 1 get it -/+ 0.01
PLAN = {("mvtec_ad", "carpet", "full"): 0.90, ("mvtec_ad", "grid", "full"): 0.80, ("mvtec_ad", "carpet", "patchcore"): 0.85,
        ("mvtec_ad", "grid", "patchcore"): 0.70, ("mpdd", "carpet", "full"): 0.60, ("mpdd", "carpet", "patchcore"): 0.64,
        ("mvtec_loco", "pushpins", "full"): 0.70, ("mvtec_loco", "screw_bag", "full"): 0.50}


@pytest.fixture
def df() -> pd.DataFrame:
    runs = [make_run(d, c, v, s, a + (0.01 if s else -0.01), t=i) for i, ((d, c, v), a) in enumerate(PLAN.items()) for s in (0, 1)]
    return lb.runs_frame(runs)


def test_rows_of_two_datasets_with_one_category_name_stay_apart(df):
    assert len(df) == 16 and lb.datasets_in(df) == ["mpdd", "mvtec_ad", "mvtec_loco"]
    carpets = df[(df.category == "carpet") & (df.variant == "full") & (df.seed == 0)].set_index("dataset_label")
    assert carpets.loc["mpdd", "last/image_auroc"] == pytest.approx(0.59) and carpets.loc["mvtec_ad", "last/image_auroc"] == pytest.approx(0.89)


def test_means_are_per_dataset_never_across(df):
    nums = lb.category_numbers(df, "full")
    assert list(nums.index) == [("mpdd", "carpet"), ("mpdd", "mean"), ("mvtec_ad", "carpet"), ("mvtec_ad", "grid"), ("mvtec_ad", "mean"),
                                ("mvtec_loco", "pushpins"), ("mvtec_loco", "screw_bag"), ("mvtec_loco", "mean")]
    assert nums.index.names == ["dataset", "category"]
    assert nums.loc[("mvtec_ad", "mean"), "image_auroc_mean"] == pytest.approx(85.0)  # (90 + 80) / 2, mpdd's carpet not in it
    assert nums.loc[("mpdd", "mean"), "image_auroc_mean"] == pytest.approx(60.0)
    assert nums.loc[("mvtec_ad", "carpet"), "image_auroc_std"] == pytest.approx(1.4142136)
    abl = lb.ablation_numbers(df)
    assert list(abl.index) == [("mpdd", "full"), ("mpdd", "patchcore"), ("mvtec_ad", "full"), ("mvtec_ad", "patchcore"), ("mvtec_loco", "full")]
    assert abl.loc[("mvtec_ad", "patchcore"), "image_auroc"] == pytest.approx(77.5)
    assert abl.loc[("mvtec_ad", "patchcore"), "delta_image_auroc"] == pytest.approx(-7.5)  # paired within mvtec_ad only
    assert abl.loc[("mpdd", "patchcore"), "delta_image_auroc"] == pytest.approx(4.0)
    assert abl.loc[("mvtec_ad", "patchcore"), "categories"] == 2 and abl.loc[("mpdd", "patchcore"), "categories"] == 1


def test_tables_show_one_block_per_dataset(df):
    table = lb.category_table(df, "patchcore")  # mvtec_loco has no patchcore trials: no block
    assert list(table.index) == [("mpdd", "carpet"), ("mpdd", "mean"), ("mvtec_ad", "carpet"), ("mvtec_ad", "grid"), ("mvtec_ad", "mean")]
    assert table.loc[("mvtec_ad", "mean"), "image AUROC"] == "77.50" and table.loc[("mpdd", "mean"), "image AUROC"] == "64.00"
    assert "one block per dataset (2), each averaged within itself, never across datasets" in table.attrs["caption"]
    md = lb.format_table(table, "md", "patchcore").splitlines()
    assert md[4] == "| dataset | category | image AUROC | pixel AUROC | PRO | image AP | student-only image AUROC | seeds | warnings |"
    assert md[5].startswith("|---|---|---:|")
    assert md[6:8] == ["| mpdd | carpet | 64.00 ± 1.41 | 62.00 ± 1.41 | 54.00 ± 1.41 | 63.00 ± 1.41 | n/a | 2/2 |  |",
                       "|  | mean | 64.00 | 62.00 | 54.00 | 63.00 | n/a | 2/2 | mean over 1 of 1 categories |"]
    assert md[8].startswith("| mvtec_ad | carpet | 85.00 ± 1.41 |") and md[9].startswith("|  | grid | 70.00 ± 1.41 |")
    latex = lb.format_table(table, "latex", "patchcore")
    assert latex.count(r"\midrule") == 4  # under the header, before each mean row, between the blocks
    back = pd.read_csv(io.StringIO(lb.format_table(table, "csv", "patchcore")), index_col=[0, 1])
    assert back.loc[("mvtec_ad", "mean"), "image_auroc_mean"] == pytest.approx(77.5)
    abl = lb.ablation_table(df)
    assert abl.loc[("mvtec_ad", "patchcore (baseline)"), "Δ image AUROC"].startswith("-7.50 [")
    paired = lb.paired_category_table(df, "patchcore")
    assert list(paired.index) == [("mpdd", "carpet"), ("mvtec_ad", "carpet"), ("mvtec_ad", "grid")]
    assert paired.loc[("mpdd", "carpet"), "Δ image AUROC"].startswith("+4.00 [")


def test_loco_logical_and_structural_image_auroc_beside_the_overall(df):
    table = lb.category_table(df, "full")
    columns = list(table.columns)
    assert columns[:4] == ["image AUROC", "image AUROC logical", "image AUROC structural", "pixel AUROC"]
    assert table.loc[("mvtec_loco", "pushpins"), "image AUROC logical"] == "60.00 ± 1.41"
    assert table.loc[("mvtec_loco", "screw_bag"), "image AUROC structural"] == "55.00 ± 1.41"
    assert table.loc[("mvtec_loco", "mean"), ["image AUROC", "image AUROC logical", "image AUROC structural"]].tolist() == ["60.00", "50.00", "65.00"]
    assert table.loc[("mvtec_ad", "carpet"), "image AUROC logical"] == "—"  # a dataset without them
    assert "logical (structural) anomalies alone" in table.attrs["caption"]
    nums = table.attrs["numbers"]
    assert nums.loc[("mvtec_loco", "mean"), "defect/logical_anomalies/image_auroc_mean"] == pytest.approx(50.0)


def test_the_per_defect_type_table(df):
    table = lb.defect_table(df, "full")
    assert list(table.index) == [("mvtec_loco", "pushpins", "logical_anomalies"), ("mvtec_loco", "pushpins", "structural_anomalies"),
                                 ("mvtec_loco", "screw_bag", "logical_anomalies"), ("mvtec_loco", "screw_bag", "structural_anomalies"),
                                 ("mvtec_loco", "mean", "logical_anomalies"), ("mvtec_loco", "mean", "structural_anomalies")]
    assert table.loc[("mvtec_loco", "pushpins", "logical_anomalies"), ["image AUROC", "PRO", "seeds"]].tolist() == ["60.00 ± 1.41", "40.00 ± 1.41", "2/2"]
    assert table.loc[("mvtec_loco", "mean", "structural_anomalies"), "image AUROC"] == "65.00"
    md = lb.format_table(table, "md", "by type").splitlines()
    assert md[4] == "| dataset | category | defect type | image AUROC | PRO | seeds |"  # rows of three datasets, one has them
    assert md[6:8] == ["| mvtec_loco | pushpins | logical_anomalies | 60.00 ± 1.41 | 40.00 ± 1.41 | 2/2 |",
                       "|  |  | structural_anomalies | 75.00 ± 1.41 | 55.00 ± 1.41 | 2/2 |"]
    loco = lb.defect_table(df[df.dataset_label == "mvtec_loco"], "full")
    assert list(loco.index.names) == ["category", "defect type"]  # one dataset: no dataset level
    with pytest.raises(lb.LeaderboardError, match=r"^no per-defect-type metrics in the patchcore trials"):
        lb.defect_table(df, "patchcore")


def test_side_by_side_has_a_block_per_dataset(df):
    table = side_by_side(df, ["full", "patchcore"])
    assert table.loc[("mpdd", "mean"), "image AUROC patchcore"] == "64.00" and table.loc[("mvtec_ad", "mean"), "image AUROC full"] == "85.00"
    assert table.loc[("mvtec_loco", "mean"), "image AUROC patchcore"] == "—"


def test_the_dataset_label_of_undeclared_data():
    assert lb.dataset_label("MVTec-AD", "mvtec_ad", "/x/y") == "mvtec_ad"
    assert lb.dataset_label("", "mvtec_ad", "/home/u/.cache/masf/synthetic-v1-seed0-size128") == "synthetic"
    assert lb.dataset_label("", "visa", "/data/VisA_20220922") == "visa layout: VisA_20220922"
    assert lb.dataset_label("", "", "") == ""  # a run logged before trials carried their data
    runs = [make_run("", "wood", "full", 0, 0.9, root="/a/real", scoped=False),
            make_run("", "wood", "full", 0, 0.7, root="/b/real", t=2, scoped=False)]
    df = lb.runs_frame(runs)
    assert sorted(df.dataset_label) == ["mvtec_ad layout: real (/a/real)", "mvtec_ad layout: real (/b/real)"]
    nums = lb.category_numbers(df, "full")
    assert nums.loc[("mvtec_ad layout: real (/b/real)", "mean"), "image_auroc_mean"] == pytest.approx(70.0)


def test_one_dataset_keeps_the_plain_tables(df):
    one = df[df.dataset_label == "mvtec_ad"]
    table = lb.category_table(one, "full")
    assert list(table.index) == ["carpet", "grid", "mean"] and "image AUROC logical" not in table
    assert "one block per dataset" not in table.attrs["caption"]


@pytest.mark.slow
def test_leaderboard_of_a_sweep_across_datasets_from_a_store(tmp_path: Path):
    from masf.runner.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "X", "sw-data").open(params={"categories": "mvtec_ad/carpet,mvtec_loco/pushpins,mvtec_loco/screw_bag",
                                                        "variants": "full", "seeds": "0"})
    t0 = time.time()
    for i, (dataset, category, auroc) in enumerate([("mvtec_ad", "carpet", 0.9), ("mvtec_loco", "pushpins", 0.7)]):
        run = make_run(dataset, category, "full", 0, auroc)
        key = run["tag:masf.trial_key"]
        tags = {k.removeprefix("tag:"): v for k, v in run.items() if k.startswith("tag:") and not k.startswith("tag:masf.")}
        tracker.submit({"kind": "trial_start", "trial": key, "tags": tags, "params": {"train.seed": 0}, "time": t0 + i})
        tracker.submit({"kind": "trial_end", "trial": key, "step": 1, "time": t0 + i + 0.5, "tags": tags, "artifacts": [],
                        "metrics": {k: v for k, v in run.items() if k.startswith("last/")}})
    assert tracker.flush() == 0
    result = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", uri, "-e", "X", "--format", "md", "--by-defect-type"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "| dataset | category | image AUROC | image AUROC logical | image AUROC structural | pixel AUROC |" in out
    assert "| mvtec_ad | carpet | 90.00 | — | — | 88.00 | 80.00 | 89.00 | n/a | 1/1 |  |" in out
    assert "| mvtec_loco | pushpins | 70.00 | 60.00 | 75.00 |" in out
    assert "|  | screw_bag | missing | missing | missing |" in out  # planned, never started, in its own block
    assert "|  | mean | 70.00 | 60.00 | 75.00 |" in out
    assert "### full: per defect type, last epoch" in out and "| mvtec_loco | pushpins | logical_anomalies | 60.00 | 40.00 | 1/1 |" in out


def test_paper_figures_stand_beside_the_mvtec_ad_block_alone(df):
    table = lb.category_table(df, "full", paper=True)
    assert table.loc[("mvtec_ad", "carpet"), "image AUROC reported"] == "62.72"  # the paper's Table 3
    assert table.loc[("mvtec_ad", "carpet"), "Δ image AUROC vs reported"] == "+27.28"
    assert table.loc[("mpdd", "carpet"), "image AUROC reported"] == "—"  # a carpet of another dataset: never
    assert list(table.columns[:4]) == ["image AUROC", "image AUROC logical", "image AUROC structural", "image AUROC reported"]
    caption = table.attrs["caption"]
    assert "mvtec_ad: reported = the MASF paper's figure as printed" in caption
    assert "; mpdd: the paper's reported figures are not shown: these runs' data was not declared MVTec AD" in caption


def test_efficiency_is_per_dataset(df):
    from masf.report.efficiency import efficiency_table

    df = df.copy()
    df["train_seconds"] = [100.0 if d == "mvtec_ad" else 10.0 for d in df.dataset_label]
    table = efficiency_table(df)
    assert table.index.nlevels == 2 and set(table.index.get_level_values(0)) == {"mpdd", "mvtec_ad", "mvtec_loco"}
    assert table.loc[("mvtec_ad", "full"), "train s"] == "100 ± 0" and table.loc[("mpdd", "full"), "train s"] == "10 ± 0"
    assert "mean over finished trials" in table.attrs["caption"]


def test_the_table_says_where_validation_normals_came_from():
    runs = [make_run("mvtec_loco", "pushpins", "full", s, 0.7, t=s) for s in (0, 1)]
    plain = lb.category_table(lb.runs_frame(runs), "full")
    assert "published validation split" not in plain.attrs["caption"]
    for r in runs:
        r["tag:val_source"] = "published"
    table = lb.category_table(lb.runs_frame(runs), "full")
    assert "validation normals: the dataset's published validation split, nothing carved out of train" in table.attrs["caption"]
    runs[1]["tag:val_source"] = "train"
    assert "for some trials" in lb.category_table(lb.runs_frame(runs), "full").attrs["caption"]
