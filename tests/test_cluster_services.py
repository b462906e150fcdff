"""A sweep through --address and --tracking-uri: a Ray cluster of a head and a worker started with
`ray start` on 127.0.0.1, and a real `mlflow server` (SQLite backend, local artifact root)."""

from __future__ import annotations

from collections import Counter

import pytest

from masf.runner.tracking import load_trial_runs
from services import cli, mlflow_server, ray_cluster

pytestmark = pytest.mark.slow


def test_sweep_on_a_two_node_cluster_with_an_mlflow_server(synth_root, tmp_path):
    with ray_cluster(tmp_path, workers=1, cpus_per_node=1) as ray_nodes, mlflow_server(tmp_path) as uri:
        out = cli("run", "--categories", "bottle,carpet", "--variants", "full,patchcore", "--data-root", str(synth_root),
                  "--address", ray_nodes["address"], "--tracking-uri", uri, "--experiment", "cluster",
                  "--storage", str(tmp_path / "shared"), "--preset", "smoke", cwd=tmp_path, env=ray_nodes["env"])
        assert out.returncode == 0, out.stdout + out.stderr
        runs = load_trial_runs(uri, "cluster")
        assert Counter(r["tag:masf.trial_key"] for r in runs) == Counter(
            {"bottle/full/seed0": 1, "bottle/patchcore/seed0": 1, "carpet/full/seed0": 1, "carpet/patchcore/seed0": 1})
        for r in runs:
            assert r["status"] == "FINISHED" and 0.0 <= r["last/pixel_auroc"] <= 1.0
        assert len({r["tag:ray_node"] for r in runs}) >= 2  # trials ran on more than one node

        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        for r in runs:  # artifacts went through the server's artifact proxy
            names = {a.path for a in client.list_artifacts(r["run_id"])}
            assert {"result.json", "config.yaml", "figures"} <= names
        board = cli("leaderboard", "--experiment", "cluster", "--tracking-uri", uri, "--format", "csv", cwd=tmp_path)
        assert board.returncode == 0, board.stderr
        assert "bottle" in board.stdout and "carpet" in board.stdout
        assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
