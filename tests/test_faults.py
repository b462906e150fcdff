"""Fault injection on real Ray and MLflow: a killed trial worker, a node leaving, an MLflow outage,
non-finite losses, an unwritable output folder. Nothing may be lost, and what fails says why."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from masf.config import build_config
from masf.runner.tracking import load_trial_runs
from masf.trial import run_trial
from services import MlflowServer, _alive_nodes, cli, free_port, ray_cluster, stop_node, wait_for

pytestmark = pytest.mark.slow

# slow enough epochs (about a second each on one core) to kill a trial in the middle of one
LONG = ["--preset", "smoke", "--set", "train.epochs=6", "--set", "data.image_size=96", "--set", "train.threads=1"]


def _driver(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "masf.cli.main", *args], cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(proc: subprocess.Popen, marker: str, seen: list[str], timeout: float = 600) -> None:
    deadline = time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return
        if time.time() > deadline:
            break
    raise AssertionError(f"never saw {marker!r}:\n{''.join(seen)}")


def _drain(proc: subprocess.Popen, seen: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    t.start()
    return t


def _trial_workers(root_pid: int) -> list[psutil.Process]:
    procs = psutil.Process(root_pid).children(recursive=True)
    return [p for p in procs if "ImplicitFunc" in " ".join(p.cmdline())]


def test_killed_trial_worker_is_retried_from_its_checkpoint(synth_root, tmp_path):
    args = ["run", "--categories", "carpet", "--data-root", str(synth_root), "--experiment", "kill", "--max-failures", "2", *LONG]
    proc, seen = _driver(args, tmp_path), []
    _read_until(proc, "epoch 2/6", seen)
    workers = _trial_workers(proc.pid)
    assert workers, "no trial worker found"
    for w in workers:
        w.send_signal(signal.SIGKILL)  # mid-epoch 3
    reader = _drain(proc, seen)
    assert proc.wait(timeout=600) == 0, "".join(seen)
    reader.join()
    out = "".join(seen)
    assert "retrying from its last checkpoint" in out and "carpet/full/seed0: done" in out
    runs = load_trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "kill")
    assert len(runs) == 1 and runs[0]["status"] == "FINISHED"  # one run, across the retry
    assert runs[0]["tag:attempts"] == "2"
    # the same final metrics as a trial never interrupted (same seed, same thread count, CPU)
    cfg = build_config("smoke", ["train.epochs=6", "data.image_size=96", "train.threads=1",
                                 f"data.root={synth_root}", "data.category=carpet", "eval.figures=false"])
    straight = run_trial(cfg, tmp_path / "straight")
    for key in ("last/image_auroc", "last/pixel_auroc", "last/pro", "best_on_test/pro"):
        assert runs[0][key] == pytest.approx(straight[key], abs=1e-6), key


def test_a_node_leaving_mid_sweep(synth_root, tmp_path):
    with ray_cluster(tmp_path, workers=1, cpus_per_node=1) as cluster:
        args = ["run", "--categories", "bottle,carpet", "--variants", "full,no_ttsa", "--data-root", str(synth_root),
                "--address", cluster["address"], "--experiment", "node", "--storage", str(tmp_path / "shared"),
                "--max-failures", "3", *LONG]
        proc, seen = _driver(args, tmp_path, cluster["env"]), []
        _read_until(proc, "epoch 2/6", seen)
        stop_node(cluster["worker_pids"][0])  # the worker node leaves, with whatever ran on it
        wait_for(lambda: _alive_nodes(cluster["address"], cluster["env"]) == 1, 120, "the node's departure")
        reader = _drain(proc, seen)
        assert proc.wait(timeout=900) == 0, "".join(seen)
        reader.join()
    assert "retrying from its last checkpoint" in "".join(seen)  # the trial on the lost node was rescheduled
    runs = load_trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "node")
    assert any(int(r["tag:attempts"]) > 1 for r in runs)
    assert Counter(r["tag:masf.trial_key"] for r in runs) == Counter(
        {k: 1 for k in ("bottle/full/seed0", "bottle/no_ttsa/seed0", "carpet/full/seed0", "carpet/no_ttsa/seed0")})
    assert all(r["status"] == "FINISHED" and "last/pro" in r for r in runs)


def test_mlflow_unreachable_at_start_is_one_line_before_any_trial(synth_root, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    out = cli("run", "--categories", "bottle", "--data-root", str(synth_root), "--tracking-uri", uri, "--preset", "smoke", cwd=tmp_path)
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0] and uri in lines[0]
    assert not (tmp_path / "masf-runs").exists()  # no trial started


def test_mlflow_outage_mid_sweep_loses_nothing(synth_root, tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        args = ["run", "--categories", "bottle,carpet", "--data-root", str(synth_root), "--tracking-uri", server.uri,
                "--experiment", "outage", "--max-concurrent", "1", *LONG]
        proc, seen = _driver(args, tmp_path), []
        _read_until(proc, "epoch 1/6", seen)
        server.stop()  # down while trials train and report
        _read_until(proc, "bottle/full/seed0: done", seen)
        time.sleep(2)
        server.start()  # back on the same port and store
        reader = _drain(proc, seen)
        assert proc.wait(timeout=900) == 0, "".join(seen)
        reader.join()
        runs = load_trial_runs(server.uri, "outage")
        from mlflow.tracking import MlflowClient

        bottle = next(r for r in runs if r["tag:masf.trial_key"] == "bottle/full/seed0")
        steps = [m.step for m in MlflowClient(server.uri).get_metric_history(bottle["run_id"], "loss")]
    finally:
        server.stop()
    assert "could not be logged" not in "".join(seen)
    assert sorted(r["tag:masf.trial_key"] for r in runs) == ["bottle/full/seed0", "carpet/full/seed0"]
    for r in runs:
        assert r["status"] == "FINISHED" and "last/image_auroc" in r and r["loss"] > 0
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6]  # every epoch, also those reported during the outage


def test_nonfinite_batches_are_counted_and_a_fully_skipped_trial_fails(synth_root, tmp_path):
    out = cli("run", "--categories", "bottle,carpet", "--data-root", str(synth_root), "--experiment", "nan",
              "--preset", "smoke", "--set", "train.inject_nonfinite=0.5", "--set", "train.epochs=3", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    runs = {r["tag:masf.trial_key"]: r for r in load_trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "nan")}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs.values():
        per_epoch = [m.value for m in sorted(client.get_metric_history(run["run_id"], "skipped_batches"), key=lambda m: m.step)]
        assert len(per_epoch) == 3 and sum(per_epoch) == run["skipped_batches_total"] > 0
    board = cli("leaderboard", "--experiment", "nan", "--format", "md", cwd=tmp_path)
    assert "non-finite loss" in board.stdout

    out = cli("run", "--categories", "bottle", "--data-root", str(synth_root), "--experiment", "allnan",
              "--preset", "smoke", "--set", "train.inject_nonfinite=1.0", cwd=tmp_path)
    assert out.returncode == 2 and "every one of the" in out.stdout and "non-finite" in out.stdout
    (run,) = load_trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "allnan")
    assert run["status"] == "FAILED" and "non-finite" in run["tag:masf.error"] and "last/image_auroc" not in run


def test_unwritable_output_folder_is_a_clear_error(synth_root, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked / "x", os.W_OK) or os.geteuid() == 0:
            target = Path("/proc/masf-cannot-write")  # root may write anywhere on disk, not in /proc
        else:
            target = locked / "out"
        out = cli("train", "--data-root", str(synth_root), "-c", "bottle", "--preset", "smoke", "--out", str(target), cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and str(target) in lines[0] and "not writable" in lines[0]


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_while_writing_a_checkpoint_is_a_clear_error(synth_root, tmp_path):
    out = subprocess.run([sys.executable, "-m", "masf.cli.main", "train", "--data-root", str(synth_root), "-c", "bottle",
                          "--preset", "smoke", "--out", str(tmp_path / "o")], cwd=tmp_path, capture_output=True, text=True,
                         preexec_fn=_file_size_limit(64 * 1024), timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "checkpoint" in lines[0] and str(tmp_path / "o") in lines[0], out.stderr
