"""What a new user meets: the main job's preset, a quiet terminal, the start-up clock, the tables the run ends with.

The sweep checks read the session's one finished sweep (conftest ``finished_sweep``: bottle, carpet and a
broken category x full, patchcore, run through the real CLI on a local Ray).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from masf.config import build_config

# what Ray and Tune print on their own (token authentication, experiment-state snapshots, GCS clients):
# nothing a user of the sweep can act on, so none of it reaches the terminal
THIRD_PARTY = re.compile(r"authentication_token_setup|experiment_state|gcs_client|snapshotting|RAY_AUTH_MODE|"
                         r"CheckpointConfig|tune_controller|\bWARNING\b|Warning:")


def test_demo_preset_changes_the_budget_only():
    """The main job runs MASF's own settings: its model section is the defaults' but for the packaged teacher."""
    demo, defaults = build_config("demo").to_dict(), build_config().to_dict()
    assert demo["preset"] == "demo"
    for part in ("sdm", "amfd", "samb", "ughf", "ttsa", "patchcore", "padim"):
        assert demo["model"][part] == defaults["model"][part], part
    assert demo["model"]["teacher"]["weights"] == "packaged" and demo["data"]["image_size"] == 128
    assert demo["data"]["val_fraction"] == defaults["data"]["val_fraction"]  # choices still made on validation


def test_run_defaults_to_the_demo_preset():
    from typer.main import get_command

    from masf.cli.main import app

    run = get_command(app).commands["run"]
    help_text = next(p.help for p in run.params if p.name == "preset")
    assert "default: demo" in help_text


@pytest.mark.slow
def test_the_terminal_carries_no_third_party_warnings(finished_sweep):
    out = finished_sweep["out"]
    noisy = [line for line in (out.stdout + out.stderr).splitlines() if THIRD_PARTY.search(line)]
    assert not noisy, noisy


def test_ray_log_lines_go_to_the_sweep_log_not_the_terminal(tmp_path, capfd):
    import logging

    from masf.runner.ray_tune import route_logs

    log = tmp_path / "sweep" / "ray.log"
    route_logs(log)
    assert not log.parent.exists()  # nothing written until Ray logs a line
    logging.getLogger("ray.tune.execution").warning("experiment state snapshotting is slow")
    ray_logger = logging.getLogger("ray")
    for handler in ray_logger.handlers:
        handler.flush()
    assert "experiment state snapshotting is slow" in log.read_text()
    assert not ray_logger.propagate and [type(h).__name__ for h in ray_logger.handlers] == ["_SweepLog"]
    assert "snapshotting" not in capfd.readouterr().err


@pytest.mark.slow
def test_startup_clock_orders_the_steps(finished_sweep):
    marks = json.loads(next((finished_sweep["cwd"] / "masf-runs").glob("*/startup.json")).read_text())
    steps = ["imports", "planned", "ray_started", "tune_started", "first_trial", "first_report"]
    assert all(s in marks for s in [*steps, "teachers", "store_open", "first_trial_code"]), marks
    assert [marks[s] for s in steps] == sorted(marks[s] for s in steps), marks
    # the worker's clock: its code is loaded (by the set-up hook) after Tune is handed the trials, before it reports
    assert marks["tune_started"] <= marks["first_trial_code"] <= marks["first_report"], marks
    # the preflight thread (teachers, then the store) is joined before Tune is set up
    assert marks["planned"] <= marks["teachers"] <= marks["store_open"] <= marks["tune_started"], marks
    assert f"first trial {marks['first_trial']:.1f} s after the command" in finished_sweep["out"].stdout


@pytest.mark.slow
def test_training_trials_are_scheduled_before_the_baselines(finished_sweep):
    """Longest first: every full trial starts before any patchcore trial (short ones fill the end)."""
    started = re.findall(r"(\w+)/(full|patchcore)/seed0: started", finished_sweep["out"].stdout)
    order = [variant for _, variant in started]
    assert order.count("full") == 3 and order.count("patchcore") == 3, order
    assert order.index("patchcore") == 3, order


@pytest.mark.slow
def test_the_run_ends_with_both_variants_side_by_side(finished_sweep):
    stdout = finished_sweep["out"].stdout
    table = stdout[stdout.index("full, patchcore: per category, side by side"):]
    for column in ("image AUROC full", "image AUROC patchcore", "pixel AUROC full", "PRO patchcore",
                   "student alone image AUROC full"):
        assert column in table, column
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 3}
    assert {"bottle", "carpet", "mean"} <= set(rows), rows  # the failed category is no row of numbers
    assert re.search(r"\d+\.\d\d", rows["bottle"])


def test_process_seconds_counts_from_the_process_start():
    """A process that waits 1 s before importing the clock reads at least 1 s, not the time since the import."""
    code = "import time; time.sleep(1.0); from masf.runner.progress import process_seconds; print(process_seconds())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 1.0 <= float(out.stdout) < 60.0
