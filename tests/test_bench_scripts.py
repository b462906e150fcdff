"""Every bench script (bench/*.py) still runs after code moves: each one's ``--smoke-test``, the same code
path at tiny sizes, with an assertion on what it printed or wrote.

The scripts run in this process (``main(argv)``), except bench_sweep, which starts Ray in its own process
(a driver that must not live inside pytest's). Two scripts' runs are tested elsewhere and not run twice
(TESTED_ELSEWHERE): bench/gpu_check.py's CPU smoke run in tests/test_gpu_check.py (here only its
``--smoke-test`` switch, with no time to run a part) and bench/record_numbers.py's synthetic case in
tests/test_numbers.py. No smoke run may write into bench/results/: every test here checks that.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
HELPERS = {"__init__", "report", "smoke"}  # bench/ modules that are not scripts
# scripts whose smoke run another test file makes already (not run twice)
TESTED_ELSEWHERE = {
    "gpu_check": "tests/test_gpu_check.py",  # --cpu-smoke through bench/gpu_check.sh; here only --smoke-test's switch
    "record_numbers": "tests/test_numbers.py",  # record(["bottle"]): what --smoke-test runs, compared number by number
}


def scripts() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in HELPERS)


def cells(text: str, first: str) -> list[list[str]]:
    """The cells of every markdown table row of ``text`` whose first cell is ``first``."""
    out = []
    for line in text.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and parts[0] == first:
            out.append(parts)
    return out


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.fixture(autouse=True)
def results_untouched():
    """No smoke run writes into bench/results/ (those files are the measured figures)."""
    def listing() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(RESULTS)): (p.stat().st_mtime_ns, p.stat().st_size) for p in RESULTS.rglob("*") if p.is_file()}

    before = listing()
    yield
    assert listing() == before, "a smoke run wrote into bench/results/"


@pytest.fixture(autouse=True)
def in_checkout(monkeypatch):
    """The scripts run from the repository root (their relative defaults, `python -m bench.NAME`)."""
    monkeypatch.chdir(ROOT)


# ------------------------------------------------------------------ every script


def test_every_script_documents_its_command_and_smoke_test():
    """Each script's docstring gives its `python -m bench.NAME` command and mentions --smoke-test, and it
    takes ``main(argv)`` (so that a test can call it in-process)."""
    for name in scripts():
        tree = ast.parse((BENCH / f"{name}.py").read_text())
        doc = ast.get_docstring(tree) or ""
        assert f"python -m bench.{name}" in doc, f"bench/{name}.py: no `python -m bench.{name}` usage line"
        assert "--smoke-test" in doc, f"bench/{name}.py: its docstring does not mention --smoke-test"
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        assert [a.arg for a in main.args.args] == ["argv"], f"bench/{name}.py: main() takes no argv"


def test_every_script_has_a_smoke_test():
    """Here (a test named test_NAME__...) or in the test file TESTED_ELSEWHERE names: a new script adds one."""
    tested = {n[len("test_"):].split("__")[0] for n in globals() if n.startswith("test_") and "__" in n}
    missing = set(scripts()) - tested - set(TESTED_ELSEWHERE)
    assert not missing, f"bench scripts without a smoke test: {sorted(missing)}"
    for name, test_file in TESTED_ELSEWHERE.items():
        if (BENCH / f"{name}.py").exists():
            assert re.search(rf"bench[./]{name}\b", (ROOT / test_file).read_text()), f"{test_file} does not run bench/{name}.py"


def test_a_smoke_run_refuses_to_write_into_bench_results():
    from bench import selection_table

    with pytest.raises(SystemExit, match="writes nothing into"):
        selection_table.main(["--experiment", "x", "--smoke-test", "--out", "bench/results/x.md"])


# ------------------------------------------------------------------ scripts that compute


def test_bench_pro__smoke(capsys):
    from bench import bench_pro

    bench_pro.main(["--smoke-test"])
    out = capsys.readouterr().out
    worst = float(re.search(r"max \|difference\| = (\S+)", out).group(1))
    assert worst <= 1e-6
    assert "category: 6 maps 64x64" in out
    for limit in ("0.3", "1.0"):
        ms = float(re.search(rf"pro_score\(fpr_limit={limit}\): (\d+) ms", out).group(1))
        assert 0 <= ms < 10_000


def test_bench_layouts__smoke(capsys):
    from bench import bench_layouts

    bench_layouts.main(["--smoke-test"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:8]}
    assert sorted(rows) == ["btad", "mvtec_3d", "mvtec_ad", "mvtec_ad2", "mvtec_loco", "visa"]
    for name, cells_ in rows.items():
        assert cells_[1] == name and cells_[4] == "0"  # recognised as itself, no data-check error
        assert cells_[5] == ("published" if name in ("mvtec_3d", "mvtec_ad2", "mvtec_loco") else "train")
        assert float(cells_[-1]) <= 1e-6, name  # the trial's metrics are the MVTec AD layout's


@pytest.mark.slow
def test_bench_coreset__smoke(capsys):
    from bench import bench_coreset

    bench_coreset.main(["--smoke-test"])
    out = capsys.readouterr().out
    (measured,), (extrapolated,) = cells(out, "1,024"), cells(out, "2,048")
    assert number(measured[1]) == 103 and measured[4] == "measured"
    assert extrapolated[4] == "extrapolated from 20 steps" and extrapolated[9] == "-"
    for row in (measured, extrapolated):
        radius_masf, radius_random = number(row[8]), number(row[10])
        assert 0 < radius_masf < radius_random  # greedy k-center covers better than random picks
        assert number(row[7]) == 1.0  # the pruned greedy picks what the textbook greedy picks


@pytest.mark.slow
def test_bench_train__smoke(capsys):
    from bench import bench_train

    bench_train.main(["--smoke-test"])
    out = capsys.readouterr().out
    for n in (4, 8):
        (row,) = cells(out, str(n))
        assert number(row[2]) > 0 and number(row[4]) == n * 64  # images / s; patches at scale 0 (8x8 maps at 32 px)
        assert len(row[5].split(", ")) == 3  # prototypes of the three scales
    assert "--smoke-test" in out


@pytest.mark.slow
def test_bench_inference__smoke(capsys):
    from bench import bench_inference

    bench_inference.main(["--smoke-test"])
    out = capsys.readouterr().out
    assert "8 test images at 32 px; backbone resnet18 (none)" in out
    (base,), (plain,), (ttsa,) = cells(out, "patchcore"), cells(out, "MASF full, no TTSA"), cells(out, "MASF full, TTSA n=2")
    (banks,), (lowered,) = cells(out, "bank_only, no TTSA"), cells(out, "MASF full, TTSA n=2, bfloat16 attention")
    assert number(base[2]) == 1.0 and number(banks[3]) == 1.0
    assert all(number(r[1]) > 0 for r in (base, plain, ttsa, banks, lowered))
    assert number(ttsa[3]) == pytest.approx(number(ttsa[1]) / number(cells(out, "bank_only, TTSA n=2")[0][1]), rel=0.05)  # printed rounded
    (total,) = cells(out, "**score(), no TTSA**")
    assert number(total[1]) > 0 and len(cells(out, "teacher")) == 1


@pytest.mark.slow
def test_bench_sharing__smoke(tmp_path, capsys):
    from bench import bench_sharing

    out_file = tmp_path / "sharing.json"
    bench_sharing.main(["--smoke-test", "--out", str(out_file)])
    result = json.loads(out_file.read_text())
    printed = capsys.readouterr().out
    assert result == json.loads(printed[printed.index("{\n"):])
    assert result["variants"] == ["full", "no_ttsa", "bank_only", "patchcore"] and result["seeds"] == [0]
    (seed,) = result["per_seed"]
    assert seed["metrics_equal"] is True and result["metrics_equal"] is True  # shared or alone: the same numbers
    assert seed["trainings_alone"] == 2 and seed["trainings_shared"] == 1
    assert seed["alone_s"] > 0 and seed["shared_s"] > 0
    assert result["cache"]["feature_cache_hits"] > 0  # the shared way read the teacher's features from the cache


@pytest.mark.slow
def test_select_reading__smoke(tmp_path, capsys):
    from bench import select_reading

    out_file = tmp_path / "records.json"
    select_reading.main(["--smoke-test", "--out", str(out_file)])
    records = json.loads(out_file.read_text())
    assert {r["rung"] for r in records} == {"spec", "+masked recon"} and {r["category"] for r in records} == {"bottle"}
    assert {r["ttsa"] for r in records} == {"no ttsa", "hermitian", "hermitian+clean", "literal", "closed-form weights"}
    for r in records:
        assert 0.0 <= r["val"]["composite"] <= 1.0 and 0.0 <= r["synth_test"]["composite"] <= 1.0
    out = capsys.readouterr().out
    ranked = re.findall(r"^\d+\. (\d\.\d{4})  ", out, flags=re.M)
    assert len(ranked) == len(records) and ranked == sorted(ranked, reverse=True)
    select_reading.main(["--table", "--out", str(out_file)])  # the tables of a finished run, read back
    assert "Criterion" in capsys.readouterr().out


@pytest.mark.slow
def test_select_scoring__smoke(tmp_path, capsys):
    from bench import select_scoring

    out_file = tmp_path / "records.json"
    select_scoring.main(["--smoke-test", "--out", str(out_file)])
    records = json.loads(out_file.read_text())
    stages = {r["stage"] for r in records}
    assert {"fusion", "components", "ttsa-diagnostics", "done"} <= stages
    assert {r["option"] for r in records if r["stage"] == "fusion"} == set(select_scoring.FUSION)
    for r in records:
        if r["stage"] in ("fusion", "components") or r["stage"].startswith("ttsa|"):
            assert set(r["val"]) == {"standard", "hard"}
            assert all(0.0 <= v[k] <= 1.0 for v in r["val"].values() for k in ("composite", *select_scoring.METRICS))
    (diag,) = [r for r in records if r["stage"] == "ttsa-diagnostics"]
    assert {(d["kind"], d["scale"]) for d in diag["val"]} == {(k, i) for k in ("cosine", "bank") for i in range(3)}
    out = capsys.readouterr().out
    fusion, ttsa = select_scoring.chosen(records)
    assert f"Chosen by the criterion: fusion **{fusion}**, TTSA **{ttsa}**." in out
    # the fusion table is ranked by its criterion column
    table = out.split("### Fusion, no TTSA")[1].split("###")[0]
    crit = [float(line.split("|")[-3]) for line in table.splitlines() if line.startswith("| ") and not line.startswith("| option")
            and line.split("|")[-2].strip().isdigit()]
    assert len(crit) == len(select_scoring.FUSION) and crit == sorted(crit, reverse=True)
    select_scoring.main(["--table", "--out", str(out_file)])  # the tables of a finished run, read back
    assert "Chosen by the criterion" in capsys.readouterr().out


@pytest.mark.slow
def test_synth_difficulty__smoke(tmp_path, capsys):
    from bench import synth_difficulty

    out_file = tmp_path / "difficulty.md"
    synth_difficulty.main(["--smoke-test", "--out", str(out_file)])
    table = out_file.read_text()
    assert "- command: `python -m bench.synth_difficulty --smoke-test --out" in table
    for category in ("bottle", "carpet"):
        (row,) = cells(table, category)
        assert 0.0 <= number(row[1]) <= 1.0 and 0.5 < number(row[2]) <= 1.0  # the bank finds the defects' pixels
    assert f"wrote {out_file}" in capsys.readouterr().out


@pytest.mark.slow
def test_diagnose_scoring__smoke(synth_root, tiny, tmp_path, capsys):
    """On a trial of the default reading (quantile normalisation: calibrated on held-out normals): the row
    'as trained' re-scores the trial exactly as it scored itself."""
    from bench import diagnose_scoring
    from masf.config import build_config
    from masf.trial import run_trial

    cfg = build_config(None, tiny(synth_root))
    assert cfg.model.ughf.normalize == "quantile"
    trial = tmp_path / "trial"
    row = run_trial(cfg, trial)
    capsys.readouterr()
    diagnose_scoring.main([str(trial), "--smoke-test"])
    out = capsys.readouterr().out
    (as_trained,) = cells(out, "as trained (config)")
    assert [number(c) for c in as_trained[1:]] == [round(row[f"last/{m}"], 3) for m in ("image_auroc", "pixel_auroc", "pro")]
    names = ["no TTSA", "bank k=1", "bank 3x3 averaging", "scale 0 only", "scale 0 only, bank 3x3"]
    for name in names:
        (r,) = cells(out, name)
        assert all(0.0 <= number(c) <= 1.0 for c in r[1:]), r
    assert not cells(out, "scale 1 only")  # the smoke test scores one scale


@pytest.mark.slow
def test_bench_anomalib__smoke_masf_side(tmp_path, capsys):
    """Our side of the peer check (anomalib itself is not installed here)."""
    from bench import bench_anomalib

    out_file = tmp_path / "masf_side.json"
    bench_anomalib.main(["masf", "--smoke-test", "--out", str(out_file)])
    side = json.loads(out_file.read_text())
    assert [(r["category"], r["method"]) for r in side["results"]] == [("bottle", "patchcore"), ("bottle", "padim")]
    for r in side["results"]:
        assert all(0.0 <= r[m] <= 1.0 for m in ("image_auroc", "pixel_auroc", "pro", "image_ap")), r
        assert r["trial_seconds"] > 0
    assert f"wrote {out_file}" in capsys.readouterr().out


def test_bench_anomalib__smoke_table(tmp_path, capsys):
    from bench import bench_anomalib

    a, m = tmp_path / "anomalib.json", tmp_path / "masf.json"
    row = {"category": "bottle", "image_auroc": 0.9, "pixel_auroc": 0.95, "pro": 0.8}
    a.write_text(json.dumps({"anomalib_version": "2.7.0", "torch": "x", "date": "d", "results": [
        {**row, "method": "patchcore", "fit_seconds": 1.0, "score_seconds": 0.5},
        {**row, "method": "padim", "fit_seconds": 2.0, "score_seconds": 0.25}]}))
    m.write_text(json.dumps({"date": "d", "results": [
        {**row, "method": "patchcore", "pro": 0.797, "bank_seconds": 1.0, "eval_seconds": 0.5, "trial_seconds": 2.0},
        {**row, "method": "padim", "image_auroc": 0.8, "bank_seconds": 1.0, "eval_seconds": 0.5, "trial_seconds": 2.0}]}))
    md = tmp_path / "table.md"
    bench_anomalib.main(["table", "--smoke-test", "--anomalib-json", str(a), "--masf-json", str(m), "--out", str(md)])
    table = md.read_text()
    assert table in capsys.readouterr().out
    patchcore, padim = cells(table, "bottle")
    # a difference of 0.3 points passes; 10 points of image AUROC are flagged
    assert patchcore[1] == "patchcore" and patchcore[10] == "+0.3" and patchcore[-1] == ""
    assert padim[1] == "padim" and padim[4] == "+10.0" and padim[-1] == "**> 0.5 pts: img**"
    assert "1 of 2 rows flagged." in table


@pytest.mark.slow
def test_profile_trial__smoke(capsys):
    from bench import profile_trial

    profile_trial.main(["--smoke-test"])
    out = capsys.readouterr().out
    for what in ("score, no TTSA", "score, TTSA 2 views"):
        ms, floor = map(float, re.search(rf"^{what}: ([\d.]+) ms per image against a floor of ([\d.]+)", out, flags=re.M).groups())
        assert ms > 0 and floor > 0
    assert re.search(r"^Train step \(teacher cached\): [\d.]+ ms per image against a floor of [\d.]+", out, flags=re.M)
    assert re.search(r"^\| attention \(SSCA\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|$", out, flags=re.M)


# ------------------------------------------------------------------ scripts that read a finished sweep


@pytest.mark.slow
def test_bench_close__smoke(finished_sweep, capsys):
    from bench import bench_close

    bench_close.main(["--store", str(finished_sweep["cwd"]), "--experiment", finished_sweep["experiment"], "--smoke-test"])
    out = capsys.readouterr().out
    (row,) = cells(out, "1")
    before, now, ratio = number(row[1]), number(row[2]), number(row[3])
    assert before > 0 and now > 0 and math.isclose(ratio, before / now, rel_tol=0.05, abs_tol=0.01)
    assert row[4] == "yes"  # both ways write the same leaderboard.md
    from masf.report import intervals

    assert intervals._DRAWN.__class__.__name__ != "_Forget"  # the module is as it was


@pytest.mark.slow
def test_bench_paired__smoke(finished_sweep, tmp_path, capsys):
    from bench import bench_paired

    uri = f"sqlite:///{finished_sweep['cwd'] / 'mlflow.db'}"
    out_json = tmp_path / "paired.json"
    bench_paired.main(["--tracking-uri", uri, "--experiment", finished_sweep["experiment"], "--smoke-test", "--json", str(out_json)])
    out = capsys.readouterr().out
    rows = cells(out, "patchcore")
    assert [r[1] for r in rows] == ["image AUROC", "pixel AUROC", "PRO", "mAD†"]
    assert all("seed 0:" in r[3] for r in rows)
    result = json.loads(out_json.read_text())
    assert set(result["variants"]) == {"patchcore"} and result["variants"]["patchcore"]["bootstrap"]["0"]["image_auroc"]
    # the per-image records give the logged image AUROC exactly (pixel metrics are binned: close)
    assert result["record_vs_exact_max_abs"]["image_auroc"] < 1e-9
    assert result["record_vs_exact_max_abs"]["pixel_auroc"] < 0.01


@pytest.mark.slow
def test_selection_table__smoke(finished_sweep, capsys):
    from bench import selection_table

    uri = f"sqlite:///{finished_sweep['cwd'] / 'mlflow.db'}"
    selection_table.main(["--experiment", finished_sweep["experiment"], "--tracking-uri", uri, "--smoke-test"])
    out = capsys.readouterr().out
    rows = {(r[0], r[1]): r for r in cells(out, "bottle") + cells(out, "carpet") + cells(out, "broken")}
    assert set(rows) == {(c, v) for c in ("bottle", "carpet", "broken") for v in ("full", "patchcore")}
    assert rows[("broken", "full")][2] == "0/1" and rows[("broken", "full")][3] == "n/a / n/a / n/a"
    for key in [k for k in rows if k[0] != "broken"]:
        assert rows[key][2] == "1/1"
        for selection in rows[key][3:]:
            assert all(0.0 <= float(v) <= 100.0 for v in selection.split(" / ")), rows[key]


@pytest.mark.slow
def test_val_ranking__smoke(finished_sweep, capsys):
    from bench import val_ranking

    (sweep,) = [p.parent for p in (finished_sweep["cwd"] / "masf-runs").glob("*/startup.json")]
    val_ranking.main([str(sweep), "--smoke-test"])
    out = capsys.readouterr().out
    assert f"Trials read: 4 from {sweep}." in out  # the two failed trials of 'broken' have no result
    for category in ("bottle", "carpet"):
        (trial,) = cells(out, f"{category}/full/seed0")
        assert trial[1] == "2" and number(trial[5]) >= 0  # two evaluated epochs; no test composite gained by choosing
        (variants,) = cells(out, category)
        assert variants[1:3] == ["0", "2"] and {variants[4], variants[5]} <= {"full", "patchcore"}


# ------------------------------------------------------------------ scripts that start `masf-bench run`


@pytest.mark.slow
def test_bench_startup__smoke(capsys):
    """One run of the real command (a fresh process, a local Ray, its own cache folder): about 30 s."""
    from bench import bench_startup

    bench_startup.main(["--smoke-test"])
    out = capsys.readouterr().out
    (run,) = cells(out, "1")
    marks = dict(zip(bench_startup.PHASES, (number(c) for c in run[1:-1])))
    assert 0 < marks["imports"] <= marks["planned"] <= marks["tune_started"] <= marks["first_trial"] <= marks["first_report"]
    assert marks["first_report"] < 600
    assert "--variants patchcore --preset smoke" in out


@pytest.mark.slow
def test_bench_sweep__smoke(tmp_path):
    """A sweep of one trial: the script starts Ray in-process, so it runs as its own process (about 30 s)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASF_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "bench.bench_sweep", "--smoke-test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    (row,) = [r for r in (l.strip("| ").split(" | ") for l in run.stdout.splitlines() if re.match(r"\| \d+ \| ", l))]
    trials, concurrent, efficiency = int(row[0]), int(row[1]), float(row[7])
    assert trials == 1 and concurrent == 1 and 0 < efficiency <= 1.0
    assert "failed:" not in run.stdout


# ------------------------------------------------------------------ gpu_check: its switch only


def test_gpu_check__smoke_switch(monkeypatch, capsys):
    """--smoke-test is --cpu-smoke with its files in a temporary folder; with no time budget no part runs
    (the CPU smoke run itself is tests/test_gpu_check.py's)."""
    from bench import gpu_check

    monkeypatch.delenv("OUT", raising=False)
    assert gpu_check.main(["--smoke-test", "--budget-s", "0"]) == 0
    out = capsys.readouterr().out
    assert "## CPU smoke" in out and "| trial | not checked | the time budget (--budget-s)" in out
    assert "/gpu_check-smoke-" in out  # the files' folder, removed afterwards
