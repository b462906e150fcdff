"""The sweep on the default local path: Ray in-process, an SQLite MLflow store in the working
directory, concurrent trials; a failing trial fails alone; a killed driver resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from masf.runner.tracking import load_trial_runs
from services import SMOKE, cli

pytestmark = pytest.mark.slow


def _store(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'mlflow.db'}"


def _children(cwd: Path, experiment: str) -> list[dict]:
    return load_trial_runs(_store(cwd), experiment)


def _artifacts(cwd: Path, run_id: str) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_store(cwd))
    names = {a.path for a in client.list_artifacts(run_id)}
    if "figures" in names:
        names |= {a.path for a in client.list_artifacts(run_id, "figures")}
    return names


def test_local_sweep_concurrent_trials_and_a_failure_alone(finished_sweep):
    tmp_path, out, victim = finished_sweep["cwd"], finished_sweep["out"], finished_sweep["victim"]
    assert out.returncode == 2, out.stdout + out.stderr  # 2: the sweep ran, a trial failed
    assert "failed broken/full/seed0" in out.stdout and victim.name in out.stdout
    runs = _children(tmp_path, "local")
    by_key = {r["tag:masf.trial_key"]: r for r in runs}
    assert sorted(Counter(r["tag:masf.trial_key"] for r in runs).values()) == [1] * 6  # one run per trial
    for key in ("bottle/full/seed0", "bottle/patchcore/seed0", "carpet/full/seed0", "carpet/patchcore/seed0"):
        run = by_key[key]
        assert run["status"] == "FINISHED", key
        assert 0.0 <= run["last/image_auroc"] <= 1.0 and 0.0 <= run["best_on_test/pro"] <= 1.0
        assert 0.0 <= run["best_on_val/image_auroc"] <= 1.0 and 0.0 <= run["val/pro"] <= 1.0
        assert len(run["tag:config_fingerprint"]) == 16 and run["tag:code_fingerprint"] and run["tag:variant_fingerprint"]
        assert {"result.json", "config.yaml", "test_stats.npz", "figures/heatmaps.png", "figures/roc.png"} <= _artifacts(tmp_path, run["run_id"])
        assert run["tag:device"] == "cpu" and run["tag:ray_node"]
        assert run["peak_rss_mb"] > 100 and 0.0 <= run["last/pixel_iou_max"] <= 1.0 and 0.0 <= run["last/mad"] <= 1.0
        assert (run["trainable_parameters"] > 0) == key.endswith("full/seed0")  # PatchCore trains nothing
    for key in ("broken/full/seed0", "broken/patchcore/seed0"):
        assert by_key[key]["status"] == "FAILED" and victim.name in by_key[key]["tag:masf.error"]
    assert by_key["bottle/full/seed0"]["loss"] > 0  # per-epoch metrics were logged
    assert (tmp_path / "mlflow.db").is_file()  # the default store: an SQLite file in the working directory
    # the leaderboard reads the runs back and shows the failure as a failure
    board = cli("leaderboard", "--experiment", "local", "--format", "md", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    assert "bottle" in board.stdout and "carpet" in board.stdout and "failed" in board.stdout
    board = cli("leaderboard", "--experiment", "local", "--format", "md", "--tables", "ablation,efficiency", "--metrics", "ader", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    # one seed: full vs patchcore's interval is the paired bootstrap over the logged per-image records
    assert "| patchcore (baseline) |" in board.stdout and "bootstrap over test images, 1 seed" in board.stdout
    assert "pixel IoU-max†" in board.stdout and "mAD†" in board.stdout and "peak RSS MB" in board.stdout


def test_killed_driver_resumes_without_reruns(synth_root, tmp_path):
    args = ["run", "--categories", "bottle,carpet", "--variants", "full,no_ttsa", "--data-root", str(synth_root),
            "--experiment", "resume", "--max-concurrent", "1", *SMOKE]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "masf.cli.main", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, deadline = [], time.time() + 600
    for line in driver.stdout:
        seen.append(line)
        if ": done in" in line or time.time() > deadline:
            break
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: no chance to clean up
    driver.wait()
    finished_before = {l.split("] ", 1)[1].split(":", 1)[0] for l in seen if ": done in" in l}
    assert finished_before, "".join(seen)

    again = cli(*args, cwd=tmp_path)  # same arguments without --resume: refused, since trials already finished
    assert again.returncode == 1 and "--resume" in again.stderr

    resumed = cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # full and no_ttsa of a category are one training group (masf/trial/sharing.py): one Ray trial, two results
    for key in finished_before:  # finished trials are not rerun: reported as done before, never started again
        assert f"{key}: started" not in resumed.stdout
        assert f"{key}: already finished" in resumed.stdout or f"{key}: finished before the stop" in resumed.stdout
        category = key.split("/")[0]
        assert len(list((tmp_path / "masf-runs").glob(f"*/{category}__full+1__seed0-*"))) == 1  # one Ray trial ever
    runs = _children(tmp_path, "resume")
    keys = Counter(r["tag:masf.trial_key"] for r in runs)
    assert keys == Counter({k: 1 for k in ("bottle/full/seed0", "bottle/no_ttsa/seed0", "carpet/full/seed0", "carpet/no_ttsa/seed0")})
    assert all(r["status"] == "FINISHED" and "last/pro" in r for r in runs)
    by_key = {r["tag:masf.trial_key"]: r for r in runs}
    for category in ("bottle", "carpet"):  # the member's run names the run it was scored from
        member, lead = by_key[f"{category}/no_ttsa/seed0"], by_key[f"{category}/full/seed0"]
        assert member["tag:masf.scored_from"] == f"{category}/full/seed0" and member["tag:masf.scored_from_run"] == lead["run_id"]
        assert member["tag:masf.training_group"] == f"{category}/full+1/seed0"
