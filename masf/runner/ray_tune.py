"""Every Ray call of masf-bench lives here (Ray's API moves between releases).

One Tune trial = one (category, variant, seed). The trainable calls the plain
``masf.trial.run_trial`` and reports each epoch with the trainer's checkpoint,
so ``FailureConfig`` retries continue from the last epoch. Trials never talk
to MLflow: a Tune callback in the driver forwards their reports to the sweep
(``TrialEvents``), which logs them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional, Protocol

import ray
from ray import tune

from masf.errors import MasfError
from masf.layout import TRIAL_FILES
from masf.runner.watchdog import Limits, Watchdog

CHECKPOINT_MARK = "trial.json"  # written into every reported checkpoint: key, epoch, final


class TrialEvents(Protocol):
    """What the driver hears about trials (called in the driver's thread)."""

    def started(self, key: str, attempt: int) -> None: ...
    def reported(self, key: str, result: dict[str, Any]) -> None: ...
    def completed(self, key: str, result: dict[str, Any], checkpoint_dir: Optional[str]) -> None: ...
    def failed(self, key: str, error: str) -> None: ...
    def retrying(self, key: str, error: str) -> None: ...


# ---------------------------------------------------------------- cluster


def probe(address: str) -> None:
    """A TCP connect to host:port, so an unreachable cluster fails in seconds, not minutes."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise MasfError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with `ray start --head` or fix --address") from None


class _SweepLog(logging.FileHandler):
    """A file handler that makes its folder when it first writes (a rejected sweep leaves no folder behind)."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def route_logs(log_file: Optional[Path]) -> None:
    """Ray's and Tune's driver-side log lines go to ``log_file`` (the sweep's ray.log), not the terminal.

    Their warnings are about Ray's own set-up (token authentication, experiment-state snapshots)
    and there is nothing a user of the sweep can do about them; the sweep's own errors still
    reach the terminal. None: Ray logs WARNING and above to stderr as it does by default.
    """
    logger = logging.getLogger("ray")
    if log_file is None:
        return
    handler = _SweepLog(log_file, encoding="utf-8", delay=True)  # nothing is written until Ray logs a line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def connect(address: Optional[str], num_cpus: Optional[int] = None, num_gpus: Optional[float] = None,
            log_file: Optional[Path] = None) -> dict[str, float]:
    """Join ``address`` (``auto``, ``host:port`` or ``ray://host:10001``) or start Ray in-process. Returns cluster resources.

    ``log_file``: where Ray's driver-side logging goes (see :func:`route_logs`)."""
    route_logs(log_file)
    if not ray.is_initialized():
        # every worker imports the trial code as it starts, before Tune calls its trial started: the
        # watchdog's limits (masf/runner/watchdog.py) then count the trial's own work, not the imports
        # (Ray gives every actor a new worker process, so this gains no time: bench/RESULTS.md section 17)
        common = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=log_file is None,
                      runtime_env={"worker_process_setup_hook": "masf.runner.ray_tune.warm_worker"})
        if address:
            probe(address)
            try:
                ray.init(address=address, **common)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                hint = ""
                if "auth" in str(exc).lower() or "token" in str(exc).lower() or "Failed to connect" in first:
                    hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token, e.g. RAY_AUTH_TOKEN_PATH)"
                raise MasfError(f"cannot connect to the Ray cluster at {address}: {first[:200]}{hint}") from None
        else:
            # the dashboard stays off; where it runs it binds to 127.0.0.1
            # address="local": always a fresh in-process Ray, never a cluster that some `ray start`
            # on this machine left in /tmp/ray/ray_current_cluster
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", **common)
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()


def warm_worker() -> None:
    """Ray worker setup hook: import what a trial needs (torch, timm, the method, the metrics)."""
    import masf.trial.run  # noqa: F401


def node_info() -> dict[str, str]:
    ctx = ray.get_runtime_context()
    return {"ray_node": ctx.get_node_id(), "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address()}


# ---------------------------------------------------------------- trainable (runs in Ray workers)


def _numeric(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _report(metrics: dict[str, Any], files: dict[str, Path], mark: dict[str, Any]) -> None:
    """tune.report with a checkpoint holding ``files`` (name -> path) and the trial mark."""
    with tempfile.TemporaryDirectory(prefix="masf-ckpt-") as tmp:
        for name, src in files.items():
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / name)
            elif src.exists():
                shutil.copy2(src, Path(tmp) / name)
        (Path(tmp) / CHECKPOINT_MARK).write_text(json.dumps(mark))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _take_checkpoint(source: str | Path, work: Path) -> None:
    """Copy the trainer's checkpoint out of a restored Tune checkpoint folder into the trial's work folder."""
    from masf.trial.trainer import CHECKPOINT

    if (Path(source) / CHECKPOINT).exists():
        shutil.copy2(Path(source) / CHECKPOINT, work / CHECKPOINT)


def _feature_cache(spec: dict[str, Any]):
    """The sweep's teacher-feature cache (masf/method/feature_cache.py) of a trial spec: on disk, or memory only."""
    from masf.method.feature_cache import FeatureCache

    where = spec.get("feature_cache") or {}
    if not where.get("dir"):
        return FeatureCache(root=None)
    return FeatureCache(root=Path(where["dir"]), limit_bytes=int(float(where.get("limit_gb", 20)) * 2**30))


def trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one trial of ``config["trial"]``, or one training group (``members``):
    one training, a result row per member (masf/trial/sharing.py)."""
    from masf.config import config_from_dict
    from masf.trial.trainer import CHECKPOINT
    from masf.trial.run import run_group, run_trial

    loaded = time.time()  # torch, timm and the trial code are in this process from here on (the hook loaded them)
    spec = config["trial"]
    cfg = config_from_dict(spec["config"])
    if cfg.train.threads <= 0:
        cfg.train.threads = max(1, int(spec.get("cpus", 1)))
    work = Path(tune.get_context().get_trial_dir()) / "work"
    work.mkdir(parents=True, exist_ok=True)
    restored = tune.get_checkpoint()
    if restored is not None:
        with tempfile.TemporaryDirectory(prefix="masf-restore-") as tmp:
            _take_checkpoint(restored.to_directory(tmp), work)
    elif spec.get("resume_from"):
        _take_checkpoint(spec["resume_from"], work)
    info = {**node_info(), "trial_code_loaded": loaded}
    key = spec["key"]
    members = spec.get("members")  # [{"key", "config"}]: a training group
    keys = [m["key"] for m in members] if members else None

    def on_epoch(record: dict[str, Any]) -> None:
        if record.get("final"):
            return  # reported below, with the result row and the figures
        mark = {"key": key, "epoch": record["epoch"], "final": False, "members": keys}
        metrics = {**_numeric(record), **info, "trial_key": key}
        if members:  # each member's record, for the driver to log under its own run
            metrics["member_records"] = json.dumps({k: _numeric(r) for k, r in record["members"].items()})
        _report(metrics, {CHECKPOINT: work / CHECKPOINT}, mark)

    cache = _feature_cache(spec)
    try:
        if members:
            rows = run_group(cfg, [(m["key"], config_from_dict(m["config"])) for m in members], work, group=key,
                             on_epoch=on_epoch, resume=True, feature_cache=cache, lead_key=spec.get("lead"))
        else:
            row = run_trial(cfg, work, on_epoch=on_epoch, resume=True, feature_cache=cache)
    except MasfError as exc:
        # bad input (data, config, weights): retrying cannot help, so the trial ends
        # here with its reason instead of raising into Tune's retry loop
        tune.report({"trial_error": f"{exc.__class__.__name__}: {exc}", "final": 1, "trial_key": key, **info})
        return
    mark = {"key": key, "epoch": cfg.train.epochs, "final": True, "members": keys}
    if members:
        files = {CHECKPOINT: work / CHECKPOINT, "members": work / "members"}
        seconds = max(float(r.get("trial_seconds", 0.0)) for r in rows.values())
        _report({"member_rows": json.dumps({k: _numeric(r) for k, r in rows.items()}), "trial_seconds": seconds,
                 **info, "trial_key": key, "final": 1}, files, mark)
        return
    files = {name: work / name for name in (*TRIAL_FILES, CHECKPOINT)}
    _report({**_numeric(row), **info, "trial_key": key, "final": 1}, files, mark)


# ---------------------------------------------------------------- driver side


class _Bridge(tune.Callback):
    """Tune's events for the driver (``TrialEvents``), and the watchdog that stops hung trials from outside.

    ``on_step_end`` runs on every step of Tune's control loop (about ten a second, whether or not
    any trial reports), so a trial past its wall or no-progress limit (masf/runner/watchdog.py) is
    stopped even when it never reports again: its actor is killed, which Tune treats like any dead
    worker (a failed attempt, retried from the last reported checkpoint within ``max_failures``).
    """

    def __init__(self, events: TrialEvents):
        self.events = events
        self.attempts: dict[str, int] = {}
        self.watchdog = Watchdog()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its settings into the experiment folder; the driver's live
        # objects (console, tracker, the watched attempts) stay behind
        return {"events": None, "attempts": dict(self.attempts), "watchdog": Watchdog()}

    @staticmethod
    def _key(trial) -> str:
        return trial.config["trial"]["key"]

    @staticmethod
    def _error(trial) -> str:
        path = getattr(trial, "error_file", None)
        text = ""
        if path and os.path.exists(path):
            text = Path(path).read_text(errors="replace")
        text = text or str(getattr(trial, "error_msg", "") or "unknown error")
        return _error_line(text)

    def on_trial_start(self, iteration, trials, trial, **info):
        key = self._key(trial)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        # called for every attempt (a fresh actor, a reused one, a retry), never for a trial still waiting
        self.watchdog.started(key, Limits.of(trial.config["trial"]["config"]), time.monotonic())
        self.events.started(key, self.attempts[key])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.watchdog.reported(self._key(trial), time.monotonic())
        self.events.reported(self._key(trial), dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.watchdog.ended(self._key(trial))  # a result that came in as the watchdog fired stands
        ckpt = trial.checkpoint
        self.events.completed(self._key(trial), dict(trial.last_result or {}), ckpt.path if ckpt else None)

    def on_trial_recover(self, iteration, trials, trial, **info):
        key = self._key(trial)
        self.events.retrying(key, self.watchdog.ended(key) or self._error(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        key = self._key(trial)
        self.events.failed(key, self.watchdog.ended(key) or self._error(trial))

    def on_step_end(self, iteration, trials, **info):
        due = self.watchdog.due(time.monotonic())
        for trial in trials if due else ():
            if self._key(trial) in due:
                self._stop(trial, due[self._key(trial)])

    @staticmethod
    def _stop(trial, reason: str) -> None:
        """Kill a running trial's actor from the driver (Ray 2.60: ``Trial.temporary_state.ray_actor``).

        Tune then sees the actor's pending task fail with ``ActorDiedError``, exactly as when its worker
        process is killed, and retries or fails the trial; a trial that is not running is left alone.
        """
        actor = trial.temporary_state.ray_actor if trial.status == trial.RUNNING else None
        if actor is None:
            logging.getLogger(__name__).warning("watchdog: %s is %s, no actor to stop (%s)", trial.config["trial"]["key"], trial.status, reason)
            return
        ray.kill(actor, no_restart=True)


def _error_line(text: str) -> str:
    """The most telling line of a worker traceback: the last 'SomeError: message'."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) or head.endswith("Exit"):
            name, _, msg = line.partition(": ")
            return f"{name.rsplit('.', 1)[-1]}: {msg}" if msg else name
    return lines[-1] if lines else "unknown error"


def run_trials(
    trials: list[dict[str, Any]],
    name: str,
    storage_path: Path,
    events: TrialEvents,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int = 0,
    max_failures: int = 1,
    reuse_workers: bool = True,
) -> None:
    """Run the trials (dicts with key, config, cpus, resume_from) as one Tune experiment.

    ``reuse_workers``: a finished trial's worker process takes the next trial (Tune's actor reuse).
    """
    if not trials:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    by_key = {t["key"]: t for t in trials}
    resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"trial": tune.grid_search(list(by_key.values()))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent or None,
            reuse_actors=reuse_workers,
            trial_name_creator=lambda t: t.config["trial"]["key"].replace("/", "__"),
            trial_dirname_creator=lambda t: t.config["trial"]["key"].replace("/", "__") + "-" + t.trial_id,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_Bridge(events)],
            verbose=0,
        ),
    )
    try:
        tuner.fit()
    except Exception as exc:  # Tune itself failed (not a trial): say so in one line
        raise MasfError(f"Ray Tune stopped: {_error_line(traceback.format_exc()) or exc}") from None


def find_checkpoints(experiment_dir: Path) -> dict[str, tuple[int, bool, Path]]:
    """Latest reported checkpoint of each trial key under an experiment folder: key -> (epoch, final, dir).

    A training group's checkpoints are found under the group's key; its members' results lie in
    ``dir/members/KEY`` (masf.trial.sharing.member_dir)."""
    latest: dict[str, tuple[int, bool, Path]] = {}
    for mark in experiment_dir.glob(f"*/checkpoint_*/{CHECKPOINT_MARK}"):
        try:
            m = json.loads(mark.read_text())
        except (OSError, ValueError):
            continue
        rank = (bool(m["final"]), int(m["epoch"]), mark.parent.name)
        old = latest.get(m["key"])
        if old is None or rank > (old[1], old[0], old[2].name):
            latest[m["key"]] = (int(m["epoch"]), bool(m["final"]), mark.parent)
    return latest
