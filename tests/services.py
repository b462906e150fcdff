"""Real services for integration tests: a Ray cluster of several nodes on 127.0.0.1, an `mlflow server`.

No mocks: these start the same programs a user starts, and stop them afterwards.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

BIN = Path(sys.executable).parent
# a quick sweep of the smoke preset: few train images, a small PatchCore bank
SMOKE = ["--preset", "smoke", "--set", "data.max_train_images=8", "--set", "model.samb.coreset_max=200"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def cli(*args: str, cwd: Path, env: Optional[dict] = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``masf-bench ARGS`` as a user would, in ``cwd``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "masf.cli.main", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@contextmanager
def ray_cluster(tmp: Path, workers: int = 1, cpus_per_node: int = 1) -> Iterator[dict]:
    """A head and ``workers`` worker nodes started with `ray start` on 127.0.0.1."""
    port = free_port()
    # token authentication on, with a token of this cluster's own (Ray's secure default)
    token = tmp / "ray-auth-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    address = f"127.0.0.1:{port}"
    # every node runs under `ray start --block` in a process group of its own: the test stops
    # exactly these nodes (never `ray stop`, which would end every Ray on the machine)
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", str(cpus_per_node), "--num-gpus", "0", "--include-dashboard", "false",
                             "--disable-usage-stats", "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    nodes = {"address": address, "env": env, "worker_pids": [], "head_pid": head.pid}
    try:
        wait_for(lambda: _alive_nodes(address, env) >= 1, 120, "the Ray head")
        for i in range(workers):
            # --block keeps each worker node in a process group of its own, so a test can take one node away
            proc = subprocess.Popen([str(BIN / "ray"), "start", "--address", address, "--node-ip-address", "127.0.0.1",
                                     "--num-cpus", str(cpus_per_node), "--num-gpus", "0", "--disable-usage-stats", "--block"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            nodes["worker_pids"].append(proc.pid)
        wait_for(lambda: _alive_nodes(address, env) >= workers + 1, 120, f"{workers + 1} Ray nodes")
        yield nodes
    finally:
        for pid in [*nodes["worker_pids"], head.pid]:
            stop_node(pid)


def stop_node(pid: int) -> None:
    """Take a worker node out of the cluster: its `ray start --block` and everything it started."""
    for sig in (15, 9):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def _alive_nodes(address: str, env: dict) -> int:
    code = (
        "import ray; ray.init(address=%r, logging_level='ERROR'); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))" % address
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with an SQLite backend and a local artifact store.

    ``stop()`` and ``start()`` again on the same port and store: an outage and a return.
    """

    def __init__(self, tmp: Path, port: Optional[int] = None):
        self.tmp, self.port = tmp, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "MlflowServer":
        self.log = open(self.tmp / "mlflow-server.log", "a")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.tmp / 'server.db'}",
             "--artifacts-destination", str(self.tmp / "server-artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self.healthy, 120, "mlflow server")
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.tmp / 'mlflow-server.log').read_text()[-2000:]}")
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        self.proc = None
        self.log.close()


@contextmanager
def mlflow_server(tmp: Path) -> Iterator[str]:
    """A real `mlflow server` for the duration of the block; yields its URI."""
    server = MlflowServer(tmp).start()
    try:
        yield server.uri
    finally:
        server.stop()
