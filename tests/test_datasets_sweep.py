"""Planning a sweep with its data read in a layout, and a sweep across datasets (a suite's ``datasets:`` list):
keys, per-dataset configs, --data-root NAME=PATH, one-line errors. Planning only: no Ray, no MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from masf.cli.main import app
from masf.errors import DataError, MasfError
from masf.report import leaderboard as lb
from masf.runner import plan, sweep
from masf.runner.sweep import SweepOptions, data_params, data_sources, training_groups

SEVEN = ["mvtec_ad", "mpdd", "mvtec_3d", "visa", "mvtec_ad2", "mvtec_loco", "btad"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small MVTec-layout roots, each with a category 'carpet' (the second also 'grid')."""
    from masf.data.synth import generate_dataset

    base = tmp_path_factory.mktemp("datasets")
    generate_dataset(base / "one", categories=["carpet"], size=32, n_train=6, n_test=4)
    generate_dataset(base / "two", categories=["carpet", "grid"], size=32, n_train=6, n_test=4)
    return {"one": base / "one", "two": base / "two"}


@pytest.fixture
def no_root_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SEVEN:
        monkeypatch.delenv(plan.root_env(name), raising=False)


def entries(roots: dict[str, Path]) -> list[dict]:
    return [{"dataset": "mvtec_ad", "data_root": str(roots["one"]), "categories": ["carpet"]},
            {"dataset": "MPDD", "data_root": "${TWO_ROOT}", "categories": "all"}]


def options(**kw) -> SweepOptions:
    return SweepOptions(**{"variants": ["full", "no_ttsa"], "preset": "smoke", "suite": "two", **kw})


def test_a_sweep_across_datasets_has_distinct_keys_and_per_dataset_configs(roots, monkeypatch, no_root_vars):
    monkeypatch.setenv("TWO_ROOT", str(roots["two"]))
    sources, lines = data_sources(options(datasets=entries(roots)))
    assert lines == []
    assert [(s.dataset, s.root, s.layout, s.categories) for s in sources] == [
        ("mvtec_ad", roots["one"].resolve(), "mvtec_ad", ("carpet",)), ("mpdd", roots["two"].resolve(), "mvtec_ad", ("carpet", "grid"))]
    trials = plan.plan_sources(sources, ["full", "no_ttsa"], [0], "smoke", [], scoped=True)
    assert [t.key for t in trials] == ["mvtec_ad/carpet/full/seed0", "mvtec_ad/carpet/no_ttsa/seed0", "mpdd/carpet/full/seed0",
                                       "mpdd/carpet/no_ttsa/seed0", "mpdd/grid/full/seed0", "mpdd/grid/no_ttsa/seed0"]
    data = {t.key: t.config["data"] for t in trials}
    assert data["mvtec_ad/carpet/full/seed0"]["root"] == str(roots["one"].resolve())
    assert data["mpdd/carpet/full/seed0"]["root"] == str(roots["two"].resolve())
    assert {(d["dataset"], d["layout"]) for d in data.values()} == {("mvtec_ad", "mvtec_ad"), ("mpdd", "mvtec_ad")}
    assert all(t.category in ("carpet", "grid") and t.dirname == t.key.replace("/", "__") for t in trials)
    # the two carpets train apart (other roots), and their training groups never share a key
    groups = training_groups(trials)
    assert sorted(g.key for g in groups) == ["mpdd/carpet/full+1/seed0", "mpdd/grid/full+1/seed0", "mvtec_ad/carpet/full+1/seed0"]
    assert {g.members for g in groups} >= {("mvtec_ad/carpet/full/seed0", "mvtec_ad/carpet/no_ttsa/seed0")}
    params = data_params(sources, scoped=True)
    assert params["categories"] == "mvtec_ad/carpet,mpdd/carpet,mpdd/grid" and params["dataset"] == "mvtec_ad,mpdd"
    assert params["data_root"] == f"mvtec_ad={roots['one'].resolve()} mpdd={roots['two'].resolve()}"


def test_the_tags_of_a_trial_carry_its_dataset_layout_and_root(roots, no_root_vars):
    sources, _ = data_sources(options(datasets=entries(roots), data_roots=[f"mpdd={roots['two']}"]))
    trials = plan.plan_sources(sources, ["full"], [0], "smoke", [], scoped=True)
    driver = sweep._Driver({t.key: t for t in trials}, None, None, None, "v")
    tags = driver._tags("mpdd/grid/full/seed0")
    assert (tags["dataset"], tags["layout"], tags["data_root"], tags["category"]) == ("mpdd", "mvtec_ad", str(roots["two"].resolve()), "grid")


def test_planned_trials_of_a_dataset_with_no_run_show_as_missing_in_its_block(roots, no_root_vars):
    sources, _ = data_sources(options(datasets=entries(roots), data_roots=[f"mpdd={roots['two']}"]))
    plan_ = lb.planned_from_params({**data_params(sources, scoped=True), "variants": "full", "seeds": "0"})
    run = {"run_id": "r1", "start_time": 1, "status": "FINISHED", "tag:masf.sweep": "sw", "tag:masf.trial_key": "mvtec_ad/carpet/full/seed0",
           "tag:category": "carpet", "tag:variant": "full", "tag:seed": "0", "tag:dataset": "mvtec_ad", "tag:layout": "mvtec_ad",
           "last/image_auroc": 0.9}
    df = lb.runs_frame([run], expected=plan_).set_index("trial_key")
    assert df.loc["mvtec_ad/carpet/full/seed0", ["dataset_label", "status"]].tolist() == ["mvtec_ad", "finished"]
    assert df.loc["mpdd/carpet/full/seed0", ["dataset_label", "category", "status"]].tolist() == ["mpdd", "carpet", "missing"]
    assert df.loc["mpdd/grid/full/seed0", "status"] == "missing" and len(df) == 3


def test_the_command_line_overrides_a_datasets_root(roots, tmp_path, monkeypatch, no_root_vars):
    suite = tmp_path / "two.yaml"
    suite.write_text(yaml.safe_dump({"datasets": [{**e, "data_root": str(tmp_path / "nowhere")} for e in entries(roots)],
                                     "variants": ["full"], "seeds": [0, 1], "preset": "smoke"}))
    seen = {}

    def capture(opts, console=None):
        seen["opts"] = opts
        raise MasfError("stopped before the sweep")

    monkeypatch.setattr(sweep, "run_sweep", capture)
    result = CliRunner().invoke(app, ["run", "--suite", str(suite), "--data-root", f"mvtec_ad={roots['one']}",
                                      "--data-root", f"mpdd={roots['two']}"])
    assert str(result.exception) == "stopped before the sweep"
    opts = seen["opts"]
    assert opts.datasets[1]["dataset"] == "mpdd" and opts.seeds == [0, 1] and opts.categories is None
    sources, _ = data_sources(opts)
    assert [(s.dataset, s.root) for s in sources] == [("mvtec_ad", roots["one"].resolve()), ("mpdd", roots["two"].resolve())]
    # without the overrides, the suite's roots are used, and one that is not a folder is one line
    result = CliRunner().invoke(app, ["run", "--suite", str(suite), "--data-root", f"mvtec_ad={roots['one']}"])
    with pytest.raises(DataError) as err:
        data_sources(seen["opts"])
    assert str(err.value) == (f"dataset mpdd: data_root {tmp_path / 'nowhere'} of suite {suite}: {tmp_path / 'nowhere'} "
                              "is not a folder (pass --data-root mpdd=PATH)")


def test_a_dataset_without_a_root_is_one_line_or_skipped(roots, no_root_vars):
    two = [entries(roots)[0], {"dataset": "mpdd", "categories": "all"}]
    with pytest.raises(plan.MissingRoot) as err:
        data_sources(options(datasets=two))
    assert str(err.value) == "dataset mpdd: no data root: set data_root in suite two, set MPDD_ROOT, or pass --data-root mpdd=PATH"
    with pytest.raises(plan.MissingRoot) as err:
        data_sources(options(datasets=entries(roots)))  # data_root ${TWO_ROOT}, not set
    assert str(err.value) == "dataset mpdd: data_root ${TWO_ROOT} of suite two: $TWO_ROOT is not set (set it, or pass --data-root mpdd=PATH)"
    sources, lines = data_sources(options(datasets=two, skip_missing=True))
    assert [s.dataset for s in sources] == ["mvtec_ad"]
    assert lines == ["skipped: dataset mpdd: no data root: set data_root in suite two, set MPDD_ROOT, or pass --data-root mpdd=PATH"]
    with pytest.raises(DataError, match=r"^suite two: no dataset has its data root; skipped: dataset mpdd: no data root"):
        data_sources(options(datasets=two[1:], skip_missing=True))


def test_unknown_names_and_misplaced_roots_are_one_line(roots, tmp_path, no_root_vars):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"datasets": [{"dataset": "viza", "data_root": "/x", "categories": "all"}], "preset": "smoke"}))
    with pytest.raises(DataError, match=rf"^{bad}: datasets\[0\]: unknown dataset 'viza' \(known: mvtec_ad, mpdd, mvtec_3d, visa, "):
        plan.load_suite(str(bad))
    bad.write_text(yaml.safe_dump({"datasets": [{"dataset": "visa", "root": "/x"}]}))
    with pytest.raises(MasfError, match=rf"^{bad}: datasets\[0\]: unknown key 'root' \(known: categories, data_root, dataset\)$"):
        plan.load_suite(str(bad))
    bad.write_text(yaml.safe_dump({"datasets": [{"dataset": "btad", "categories": [1, 2]}]}))
    with pytest.raises(MasfError, match=r"datasets\[0\] \(btad\): categories must be 'all' or a list of names \(quote names like '01'\)"):
        plan.load_suite(str(bad))
    with pytest.raises(DataError, match=r"^--data-root viza=/x: unknown dataset 'viza' \(known: "):
        plan.parse_data_roots(["viza=/x"])
    with pytest.raises(DataError, match=r"^--data-root visa=/y: visa is given twice$"):
        plan.parse_data_roots(["visa=/x", "visa=/y"])
    with pytest.raises(DataError, match=r"^--data-root btad=: suite two runs no dataset btad \(its datasets: mvtec_ad, mpdd\)$"):
        data_sources(options(datasets=entries(roots), data_roots=["btad=/x"]))
    with pytest.raises(DataError, match=rf"^--data-root {roots['one']}: suite two spans datasets \(mvtec_ad, mpdd\): give --data-root NAME=PATH for each$"):
        data_sources(options(datasets=entries(roots), data_roots=[str(roots["one"])]))
    with pytest.raises(DataError, match=rf"^dataset mvtec_ad: unknown category 'wood' in {roots['one'].resolve()} \(found: carpet\)$"):
        data_sources(options(datasets=entries(roots)[:1], categories=["wood"]))
    with pytest.raises(DataError, match=r"^--dataset visa: suite two has no such dataset \(its datasets: mvtec_ad, mpdd\)$"):
        data_sources(options(datasets=entries(roots), dataset="visa"))


def test_a_single_dataset_sweep_keeps_its_keys_and_reads_with_its_layout(roots, monkeypatch, no_root_vars):
    sources, lines = data_sources(options(data_roots=[str(roots["two"])], categories=["grid"]))
    assert lines == [f"data root {roots['two'].resolve()}: MVTec AD layout, recognised (carpet/train/good, carpet/test); --dataset names it otherwise"]
    trials = plan.plan_sources(sources, ["full"], [0, 1], "smoke")
    assert [t.key for t in trials] == ["grid/full/seed0", "grid/full/seed1"]
    assert {(t.config["data"]["layout"], t.config["data"]["dataset"]) for t in trials} == {("mvtec_ad", "")}
    # NAME=PATH declares the dataset; --dataset with a root of its variable; a declared dataset prints nothing
    sources, lines = data_sources(options(data_roots=[f"mpdd={roots['two']}"], all_categories=True))
    assert (sources[0].dataset, sources[0].categories, lines) == ("mpdd", ("carpet", "grid"), [])
    monkeypatch.setenv("MPDD_ROOT", str(roots["one"]))
    sources, _ = data_sources(options(dataset="mpdd", all_categories=True))
    assert (sources[0].root, sources[0].categories) == (roots["one"].resolve(), ("carpet",))
    with pytest.raises(DataError, match=r"^--dataset visa: no data root: pass --data-root PATH or set VISA_ROOT$"):
        data_sources(options(dataset="visa", all_categories=True))
    with pytest.raises(DataError, match=r"^--data-root mpdd=: this sweep runs dataset visa: give --data-root visa=PATH or PATH$"):
        data_sources(options(dataset="visa", data_roots=[f"mpdd={roots['two']}"], all_categories=True))


def test_the_synthetic_default_is_undeclared_and_mvtec_layout(roots, monkeypatch, no_root_vars):
    monkeypatch.setattr(plan, "synthetic_root", lambda: roots["two"])
    sources, lines = data_sources(options(categories=["carpet"]))
    assert lines == [f"no --data-root and no MVTEC_AD_ROOT: using the synthetic MVTec-layout dataset at {roots['two']}"]
    (trial,) = plan.plan_sources(sources, ["full"], [0], "smoke")
    assert trial.key == "carpet/full/seed0" and (trial.config["data"]["dataset"], trial.config["data"]["layout"]) == ("", "mvtec_ad")


def test_every_dataset_suite_declares_a_known_dataset_and_field_spans_seven():
    suites = {n: plan.load_suite(n) for n in plan.known_suites()}
    for name in SEVEN:
        assert suites[name]["dataset"] == name and suites[name]["variants"] == ["full", "no_ttsa", "patchcore"]
        assert suites[name]["preset"] == "paper" and suites[name]["seeds"] == [0]
    field = suites["field"]["datasets"]
    assert [e["dataset"] for e in field] == SEVEN
    assert [e["data_root"] for e in field] == [f"${{{plan.root_env(n)}}}" for n in SEVEN]
    assert {e["dataset"]: e["categories"] for e in field} == {n: suites[n]["categories"] for n in SEVEN}
    assert suites["btad"]["categories"] == ["01", "02", "03"] and len(suites["mvtec_ad"]["categories"]) == 15
