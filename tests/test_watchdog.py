"""The watchdog: a hung trial is stopped from outside within its limit, retried from its checkpoint,
and, once retries run out, shown as timed out in MLflow and the leaderboard.

The limit logic is tested with plain numbers; the rest on real Ray and a real SQLite MLflow store,
through the CLI, with the trainer's injected hang (``train.inject_hang_epoch``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from masf.report import leaderboard as lb
from masf.cli.main import app
from masf.fingerprint import variant_fingerprint
from masf.config.readings import DEFAULT_READING
from masf.runner.progress import SweepProgress
from masf.runner.tracking import load_trial_runs
from masf.errors import is_timeout
from masf.runner.watchdog import Attempt, Limits, Watchdog, over_limit, overdue

KEY = "bottle/full/seed0"
SMOKE = ["--preset", "smoke", "--categories", "bottle", "--set", "eval.figures=false"]  # figures: time, not what is tested


# ---------------------------------------------------------------- the limit logic, no Ray


def test_limits_from_config_and_none_is_no_limit():
    assert Limits.of({"train": {"wall_limit_s": 3600.0, "stall_limit_s": None}}) == Limits(3600.0, None)
    never = Attempt(Limits(None, None), started=0.0)
    assert over_limit(never, 1e9) is None


def test_stall_counts_from_the_start_then_from_the_last_report():
    a = Attempt(Limits(wall_s=None, stall_s=20.0), started=100.0)
    assert over_limit(a, 120.0) is None  # exactly at the limit is not past it
    assert over_limit(a, 131.0) == "timed out: no epoch report for 31 s (train.stall_limit_s=20)"
    a.last_report = 125.0
    assert over_limit(a, 131.0) is None and over_limit(a, 145.5) is not None


def test_wall_limit_and_the_limit_passed_first_is_named():
    a = Attempt(Limits(wall_s=3600.0, stall_s=900.0), started=0.0, last_report=3000.0)
    assert over_limit(a, 3599.0) is None
    assert over_limit(a, 3605.0) == "timed out: attempt ran 3605 s (train.wall_limit_s=3600)"
    a.last_report = 2500.0  # quiet since 2500: the stall limit passed at 3400, before the wall limit
    assert over_limit(a, 3605.0).startswith("timed out: no epoch report for 1105 s")
    assert is_timeout(over_limit(a, 3605.0)) and not is_timeout("RayActorError: node died")


def test_overdue_skips_attempts_already_being_stopped():
    attempts = {"a": Attempt(Limits(None, 10.0), 0.0), "b": Attempt(Limits(None, 10.0), 5.0),
                "c": Attempt(Limits(None, 10.0), 0.0, stopping=True)}
    assert set(overdue(attempts, 12.0)) == {"a"}


def test_watchdog_names_an_attempt_once_and_only_started_ones():
    dog = Watchdog()
    assert dog.due(1e9) == {}  # nothing started (a trial waiting to be scheduled is not watched)
    dog.reported("waiting/full/seed0", 0.0)  # a report of an unwatched trial changes nothing
    dog.started(KEY, Limits(None, 10.0), now=0.0)
    dog.reported(KEY, 5.0)
    assert dog.due(14.0) == {}
    assert list(dog.due(16.0)) == [KEY] and dog.due(30.0) == {}  # once per attempt
    assert dog.ended(KEY).startswith("timed out: no epoch report for 11 s")
    assert dog.ended(KEY) is None and dog.due(1e9) == {}
    dog.started(KEY, Limits(None, 10.0), now=100.0)  # the retry: a fresh clock
    assert dog.due(105.0) == {} and KEY in dog.due(111.0)
    dog.started(KEY, Limits(None, 10.0), now=200.0)  # a new attempt forgets the old reason
    assert dog.ended(KEY) is None


def test_progress_and_leaderboard_say_timed_out():
    buf = io.StringIO()
    with SweepProgress([KEY, "carpet/full/seed0"], {KEY: 3}, console=Console(file=buf, width=200)) as p:
        p.started(KEY, 1)
        p.retrying(KEY, "timed out: no epoch report for 16 s (train.stall_limit_s=15)")
        p.started(KEY, 2)
        p.failed(KEY, "timed out: attempt ran 3601 s (train.wall_limit_s=3600)")
        view = Console(file=io.StringIO(), width=200, record=True)
        view.print(p.render())
    assert "retrying from its last checkpoint after: timed out: no epoch report" in buf.getvalue()
    assert p.rows[KEY].timeouts == 2 and "1 failed (1 timed out)" in view.export_text()
    run = {"run_id": "r1", "start_time": 1, "status": "FAILED", "tag:masf.sweep": "sw", "tag:masf.trial_key": KEY,
           "tag:category": "bottle", "tag:variant": "full", "tag:seed": "0", "tag:variant_fingerprint": variant_fingerprint("full"),
           "tag:reading": DEFAULT_READING,
           "tag:masf.error": "timed out: attempt ran 3601 s (train.wall_limit_s=3600)"}
    done = {**run, "run_id": "r2", "status": "FINISHED", "tag:masf.trial_key": "carpet/full/seed0", "tag:category": "carpet",
            "tag:masf.error": "", "last/image_auroc": 0.9, "last/pixel_auroc": 0.9, "last/pro": 0.8, "last/image_ap": 0.9}
    df = lb.runs_frame([run, done])
    assert df.set_index("trial_key").status[KEY] == "timed out"
    table = lb.category_table(df)
    assert table.loc["bottle", "image AUROC"] == "timed out" and table.loc["mean", "image AUROC"] == "90.00"
    assert "seed 0 timed out: attempt ran 3601 s" in table.loc["bottle", "warnings"]


# ---------------------------------------------------------------- end to end: real Ray, real MLflow


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    """``masf-bench ARGS`` in ``cwd``, its output to cwd/out.txt."""
    cwd.mkdir(exist_ok=True)
    with open(cwd / "out.txt", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "masf.cli.main", *args], cwd=cwd, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, cwd: Path) -> str:
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return (cwd / "out.txt").read_text()


def _wait_for(proc: subprocess.Popen, cwd: Path, marker: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while marker not in (cwd / "out.txt").read_text():
        assert proc.poll() is None and time.monotonic() < end, f"never saw {marker!r}:\n{(cwd / 'out.txt').read_text()}"
        time.sleep(0.5)


def _at(out: str, marker: str) -> float:
    """Seconds of the day of the progress line ``[HH:MM:SS] ...marker``."""
    m = re.search(r"^\[(\d\d):(\d\d):(\d\d)\] [^\n]*" + re.escape(marker), out, re.M)
    assert m, f"no progress line with {marker!r}:\n{out}"
    h, mi, s = map(int, m.groups())
    return h * 3600 + mi * 60 + s


@pytest.mark.slow
def test_a_hung_trial_is_stopped_retried_and_then_timed_out(synth_root, tmp_path):
    # two sweeps (each starts its own Ray, which is most of their time), the second started once the
    # first's trial runs, so its start-up overlaps the first's hang rather than its start-up: one where
    # the hang is stopped by the no-progress limit and retried from the epoch-1 checkpoint (reused
    # workers, the local default), one where the wall limit stops it and no retry is left (fresh workers)
    stall, wall = 15, 8
    retried, exhausted = tmp_path / "retried", tmp_path / "exhausted"
    common = ["run", *SMOKE, "--data-root", str(synth_root), "--experiment", "hang"]
    first = _start(retried, *common, "--max-failures", "1", "--set", "train.epochs=2", "--set", "train.inject_hang_epoch=2",
                   "--set", f"train.stall_limit_s={stall}")
    second = None
    try:
        _wait_for(first, retried, f"{KEY}: started")
        second = _start(exhausted, *common, "--max-failures", "0", "--fresh-workers", "--set", "train.epochs=1",
                        "--set", "train.inject_hang_epoch=1", "--set", f"train.wall_limit_s={wall}", "--set", "train.stall_limit_s=null")
        out2 = _finish(second, exhausted)
        out = _finish(first, retried)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()

    # retried: stopped within its limit (honest slack: the driver hears of the report and of the
    # actor's death a moment late, and progress lines have one-second stamps), then resumed at epoch 2
    assert first.returncode == 0, out
    reason = re.search(rf"{KEY}: retrying from its last checkpoint after: timed out: no epoch report for (\d+) s "
                       rf"\(train.stall_limit_s={stall}\)", out)
    assert reason and stall <= int(reason[1]) <= stall + 3, out
    assert stall - 1 <= _at(out, f"{KEY}: retrying") - _at(out, f"{KEY}: epoch 1/2") <= stall + 8, out
    after = out[out.index("(attempt 2)"):]
    assert "epoch 1/2" not in after and f"{KEY}: done" in after, out
    (run,) = load_trial_runs(f"sqlite:///{retried / 'mlflow.db'}", "hang")
    assert run["status"] == "FINISHED" and "last/image_auroc" in run
    assert run["tag:attempts"] == "2" and run["tag:masf.timeouts"] == "1"
    from mlflow.tracking import MlflowClient

    steps = [m.step for m in MlflowClient(f"sqlite:///{retried / 'mlflow.db'}").get_metric_history(run["run_id"], "loss")]
    assert sorted(steps) == [1, 2]  # epoch 1 trained once: the retry continued from its checkpoint

    # exhausted: FAILED with the watchdog's reason, "timed out" in the leaderboard
    assert second.returncode == 2, out2
    reason = re.search(rf"{KEY}: FAILED: timed out: attempt ran (\d+) s \(train.wall_limit_s={wall}\)", out2)
    assert reason and wall <= int(reason[1]) <= wall + 3, out2
    assert _at(out2, f"{KEY}: FAILED") - _at(out2, f"{KEY}: started") <= wall + 8, out2
    (run,) = load_trial_runs(f"sqlite:///{exhausted / 'mlflow.db'}", "hang")
    assert run["status"] == "FAILED" and run["tag:masf.error"].startswith("timed out: attempt ran")
    assert run["tag:masf.timeouts"] == "1" and "last/image_auroc" not in run
    # `masf-bench leaderboard` (in this process: a second interpreter's start-up is time, not what is tested)
    board = CliRunner().invoke(app, ["leaderboard", "--experiment", "hang", "--format", "md", "--tracking-uri", f"sqlite:///{exhausted / 'mlflow.db'}"])
    assert board.exit_code == 0, board.output
    row = next(line for line in board.output.splitlines() if line.startswith("| bottle |"))
    assert "| timed out |" in row and "seed 0 timed out: attempt ran" in row
