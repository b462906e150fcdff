"""Every MLflow call of masf-bench lives here (MLflow's API moves between releases).

Only the sweep's driver process talks to MLflow: trials report to Ray Tune and
the driver logs. One writer means a local SQLite store never meets "database
is locked" from concurrent trials; each call is still retried on transient
errors, and what cannot be logged is kept in a spool file and logged when the
store is back (``Tracker.flush``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import quote

from masf.errors import MasfError

log = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # schema-creation INFO lines are noise in a sweep's output
# fail fast on an unreachable server: the spool below retries, MLflow's own back-off would block for minutes
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
TAG_SWEEP = "masf.sweep"
TAG_TRIAL = "masf.trial_key"
TAG_KIND = "masf.kind"  # "sweep" (the sweep's run) or "trial"
# MLflow's UI: an experiment of this kind is model training (it opens on the runs table, not on GenAI traces)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as markdown on its page
NOTE_LIMIT = 8000  # the longest run tag value MLflow stores
# a saved view of the runs table, stored as an experiment tag and opened by ?viewStateShareKey=VIEW_ID
VIEW_ID, VIEW_TAG_PREFIX = "masf-headline", "mlflow.sharedViewState."
# its metrics: masf.report.leaderboard.DEFAULT_METRICS, not imported for a sweep's start (slow); tests/test_ui.py keeps them equal
VIEW_METRICS = ("image_auroc", "pixel_auroc", "pro", "image_ap")
# MLflow 3's UI takes its GenAI or machine-learning layout from the URL's workflowType (else the browser's last choice)
UI_QUERY = f"viewStateShareKey={VIEW_ID}&workflowType=machine_learning"
UI_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class TrackingError(MasfError):
    """The tracking store cannot be reached or refuses a write."""


def default_tracking_uri(cwd: Optional[Path] = None) -> str:
    """The local default: an SQLite file in the working directory."""
    return f"sqlite:///{(Path(cwd or Path.cwd()) / DEFAULT_DB).resolve()}"


def default_artifact_root(tracking_uri: str) -> Optional[str]:
    """Artifacts beside a local SQLite store; a server decides for itself."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / DEFAULT_ARTIFACTS).resolve().as_uri()
    return None


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when an http(s) tracking server does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http(s) only, checked above)
            if resp.status != 200:
                raise TrackingError(f"MLflow server {tracking_uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow server {tracking_uri} is unreachable ({reason}); start it or pass another --tracking-uri") from None


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _transient(exc: BaseException) -> bool:
    text = f"{exc.__class__.__name__}: {exc}".lower()
    return any(s in text for s in ("database is locked", "connection", "timed out", "temporarily", "503", "502", "max retries"))


def retry(fn: Callable[[], Any], attempts: int = 6, base_delay: float = 0.2) -> Any:
    """Call ``fn`` with exponential back-off on transient store errors."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # MLflow raises many types for the same failure
            if i == attempts - 1 or not _transient(exc):
                raise
            time.sleep(base_delay * 2**i)


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@dataclass
class Tracker:
    """The sweep's view of MLflow: an experiment, the sweep's (parent) run, one run per trial key."""

    tracking_uri: str
    experiment: str
    sweep: str
    spool: Optional[Path] = None  # where events that could not be logged wait
    experiment_id: str = ""
    parent_run_id: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # trial key -> run id
    finished_code: dict[str, str] = field(default_factory=dict)  # finished trial key -> its code fingerprint tag
    pending: list[dict[str, Any]] = field(default_factory=list)
    down_since: Optional[float] = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _flushing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)

    # ------------------------------------------------------------ setup

    def open(self, params: Optional[dict[str, Any]] = None) -> "Tracker":
        check_reachable(self.tracking_uri)
        client = _client(self.tracking_uri)
        try:
            exp = retry(lambda: client.get_experiment_by_name(self.experiment))
            if exp is None:
                art = default_artifact_root(self.tracking_uri)
                self.experiment_id = retry(lambda: client.create_experiment(self.experiment, artifact_location=art,
                                                                            tags=experiment_tags({})))
            else:
                if exp.lifecycle_stage == "deleted":
                    raise TrackingError(f"MLflow experiment '{self.experiment}' is deleted; restore it or choose another --experiment")
                self.experiment_id = exp.experiment_id
                for key, value in experiment_tags(exp.tags).items():
                    retry(lambda: client.set_experiment_tag(self.experiment_id, key, value))
            self.parent_run_id = self._find_or_create(client, {TAG_KIND: "sweep"}, f"sweep {self.sweep}")
            for run in self._search(client, f"tags.`{TAG_KIND}` = 'trial' and tags.`{TAG_SWEEP}` = '{self.sweep}'"):
                self.runs.setdefault(run.data.tags[TAG_TRIAL], run.info.run_id)
            if params:
                self._log_params(client, self.parent_run_id, params)
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(f"MLflow store {self.tracking_uri} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
        if self.spool and self.spool.exists():
            self.pending = [json.loads(line) for line in self.spool.read_text().splitlines() if line.strip()]
        return self

    def _search(self, client, filter_string: str) -> list:
        out, token = [], None
        while True:
            page = retry(lambda: client.search_runs([self.experiment_id], filter_string, max_results=1000, page_token=token))
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _find_or_create(self, client, tags: dict[str, str], name: str) -> str:
        filt = " and ".join([f"tags.`{TAG_SWEEP}` = '{self.sweep}'"] + [f"tags.`{k}` = '{v}'" for k, v in tags.items()])
        found = self._search(client, filt)
        if found:
            return sorted(found, key=lambda r: r.info.start_time)[0].info.run_id
        run = retry(lambda: client.create_run(self.experiment_id, tags={TAG_SWEEP: self.sweep, **tags}, run_name=name))
        return run.info.run_id

    def _log_params(self, client, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        existing = retry(lambda: client.get_run(run_id)).data.params
        items = [p for p in items if p.key not in existing]  # params are write-once
        for chunk in _chunks(items, 100):
            retry(lambda: client.log_batch(run_id, params=chunk))

    # ------------------------------------------------------------ events (queued, retried)

    def finished_trials(self) -> dict[str, str]:
        """Trial key -> run id of every trial run that finished with final metrics."""
        client = _client(self.tracking_uri)
        done = {}
        for key, run_id in self.runs.items():
            run = retry(lambda: client.get_run(run_id))
            if run.info.status == "FINISHED" and "last/image_auroc" in run.data.metrics:
                done[key] = run_id
                self.finished_code[key] = run.data.tags.get("code_fingerprint", "")
        return done

    def submit(self, event: dict[str, Any]) -> None:
        """Queue one event (trial_start, epoch, trial_end, trial_failed, sweep_end).

        With a background writer running (``start``), this returns at once and the
        writer logs in order; otherwise the queue is logged here and now.
        """
        with self._lock:
            self.pending.append(event)
        if self._thread is not None:
            self._wake.set()
        else:
            self.flush()

    def flush(self, deadline_s: float = 0.0) -> int:
        """Log queued events in order; keep the rest (and the spool file) when the store is down.

        With ``deadline_s`` > 0 keep retrying that long. Returns how many events are still waiting.
        """
        end = time.monotonic() + deadline_s
        with self._flushing:
            while True:
                try:
                    client = _client(self.tracking_uri)
                    while True:
                        with self._lock:
                            if not self.pending:
                                break
                            event = self.pending[0]
                        self._apply(client, event)
                        with self._lock:
                            self.pending.pop(0)
                    self.down_since = None
                    break
                except Exception as exc:
                    if self.down_since is None:
                        self.down_since = time.monotonic()
                        log.warning("MLflow store %s not reachable (%s: %s); events are kept and logged when it is back",
                                    self.tracking_uri, exc.__class__.__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
                    if time.monotonic() >= end:
                        break
                    time.sleep(min(2.0, max(0.0, end - time.monotonic())))
            self._write_spool()
            with self._lock:
                return len(self.pending)

    # ------------------------------------------------------------ background writer

    def start(self) -> "Tracker":
        """Log from a background thread, so the sweep's event loop never waits on the store."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="masf-mlflow-writer", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=5.0)
            self._wake.clear()
            if self.pending:
                self.flush()
                if self.pending:  # store down: back off before the next try
                    self._stop.wait(timeout=3.0)

    def stop(self, deadline_s: float = 60.0) -> int:
        """Stop the writer, then keep trying for ``deadline_s``; returns events still not logged."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        return self.flush(deadline_s=deadline_s)

    def _write_spool(self) -> None:
        if not self.spool:
            return
        with self._lock:
            pending = list(self.pending)
        if pending:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.spool.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e) + "\n" for e in pending))
            os.replace(tmp, self.spool)
        elif self.spool.exists():
            self.spool.unlink()

    def _child(self, client, key: str, tags: dict[str, str]) -> str:
        # a top-level run, not nested under the sweep's run: MLflow's runs table folds nested runs away
        if key not in self.runs:
            self.runs[key] = self._find_or_create(client, {TAG_KIND: "trial", TAG_TRIAL: key}, trial_run_name(key))
        run_id = self.runs[key]
        if tags:
            from mlflow.entities import RunTag

            retry(lambda: client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))
        return run_id

    def _apply(self, client, event: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        kind, key = event["kind"], event.get("trial")
        now = int(event.get("time", time.time()) * 1000)
        if kind == "trial_start":
            run_id = self._child(client, key, event.get("tags", {}))
            retry(lambda: client.update_run(run_id, status="RUNNING"))
            self._log_params(client, run_id, event.get("params", {}))
        elif kind in ("epoch", "trial_end"):
            # run_tags: tag -> another trial's key, logged as that trial's run id (e.g. the run a member was scored from)
            links = {tag: self.runs[other] for tag, other in event.get("run_tags", {}).items() if other in self.runs}
            run_id = self._child(client, key, {**event.get("tags", {}), **links})
            step = int(event.get("step", 0))
            metrics = [Metric(k, float(v), now, step) for k, v in event.get("metrics", {}).items()]
            for chunk in _chunks(metrics, 500):
                retry(lambda: client.log_batch(run_id, metrics=chunk))
            if kind == "trial_end":
                for local, dest in event.get("artifacts", []):
                    if Path(local).exists():
                        if Path(local).is_dir():
                            retry(lambda: client.log_artifacts(run_id, local, dest or None))
                        else:
                            retry(lambda: client.log_artifact(run_id, local, dest or None))
                retry(lambda: client.set_terminated(run_id, "FINISHED", end_time=now))
        elif kind == "trial_failed":
            run_id = self._child(client, key, {"masf.error": event.get("error", "")[:5000], **event.get("tags", {})})
            retry(lambda: client.set_terminated(run_id, "FAILED", end_time=now))
        elif kind == "sweep_end":
            from mlflow.entities import RunTag

            for local, dest in event.get("artifacts", []):
                if Path(local).exists():
                    retry(lambda: client.log_artifact(self.parent_run_id, local, dest or None))
            metrics = [Metric(k, float(v), now, 0) for k, v in event.get("metrics", {}).items()]
            tags = [RunTag(k, str(v)) for k, v in {**event.get("tags", {}), **self._description(event)}.items()]
            retry(lambda: client.log_batch(self.parent_run_id, metrics=metrics, tags=tags))
            retry(lambda: client.set_terminated(self.parent_run_id, event.get("status", "FINISHED"), end_time=now))
        else:
            raise ValueError(f"unknown tracking event {kind!r}")

    def _description(self, event: dict[str, Any]) -> dict[str, str]:
        """The sweep run's description tag from the event's leaderboard markdown file, if any."""
        spec = event.get("description")
        if not spec or not Path(spec["markdown"]).exists():
            return {}
        return {NOTE_TAG: leaderboard_note(Path(spec["markdown"]).read_text(), self.parent_run_id, spec["figure"])}


def trial_run_name(key: str) -> str:
    """A trial's run name: 'bottle/full/0' for the key 'bottle/full/seed0'."""
    head, sep, seed = key.rpartition("/seed")
    return f"{head}/{seed}" if sep and seed.isdigit() else key


def leaderboard_note(markdown: str, run_id: str, figure: str) -> str:
    """Markdown for a run's description: the leaderboard's title, the figure (a run artifact), its first section
    (as much as MLflow keeps), where the rest is."""
    image = f"![{Path(figure).stem}](get-artifact?path={quote(figure, safe='')}&run_uuid={run_id})"
    rest = "\n\nEvery selection, the paired intervals and the costs: artifacts `leaderboard/`."
    title, _, first = "\n## ".join(markdown.split("\n## ")[:2]).rstrip().partition("\n")
    budget = NOTE_LIMIT - len(title) - len(image) - len(rest) - 3
    if len(first) > budget:  # whole tables: cut before the last table title that fits
        cut = first.rfind("\n### ", 0, budget)
        first = (first[:cut] if cut > 0 else first[:budget].rsplit("\n", 1)[0]).rstrip()
    return f"{title}\n\n{image}\n{first}{rest}"


def runs_view() -> str:
    """The saved runs-table view: trials by headline image AUROC, the leaderboard's metrics, category and variant."""
    metrics = [f"metrics.`last/{m}`" for m in VIEW_METRICS]
    columns = ["tags.`category`", "tags.`variant`", *metrics]
    state = {"orderByKey": metrics[0], "orderByAsc": False, "selectedColumns": columns, "columnOrder": columns,
             "columnWidths": {m: 150 for m in metrics}}  # the whole value, e.g. 0.7333333333333333
    now = int(time.time() * 1000)
    return json.dumps({"name": "masf headline", "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def experiment_tags(existing: dict[str, str]) -> dict[str, str]:
    """The experiment tags a sweep sets where missing: model training, and the headline view (also where outdated)."""
    view = runs_view()
    stored = existing.get(VIEW_TAG_PREFIX + VIEW_ID)
    tags = {} if stored and json.loads(stored)["state"] == json.loads(view)["state"] else {VIEW_TAG_PREFIX + VIEW_ID: view}
    return {**({} if KIND_TAG in existing else {KIND_TAG: KIND}), **tags}


# ---------------------------------------------------------------- reading (leaderboard)


def read_artifact(tracking_uri: str, run_id: str, path: str, read: Callable[[str], Any]) -> Any:
    """``read(local file)`` of one artifact of a run, downloaded to a temporary folder; None when the run has none."""
    import tempfile

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar per file on stderr
    with tempfile.TemporaryDirectory(prefix="masf-artifact-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=tracking_uri)
        except Exception:  # noqa: BLE001 - absent (or unreadable) artifact: the caller does without it
            return None
        return read(local)


def load_trial_runs(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """Every trial run of an experiment as a flat dict: tags, params, latest metrics, status."""
    check_reachable(tracking_uri)
    client = _client(tracking_uri)
    exp = retry(lambda: client.get_experiment_by_name(experiment))
    if exp is None:
        raise TrackingError(f"no MLflow experiment '{experiment}' in {tracking_uri}")
    rows, token = [], None
    while True:
        page = retry(lambda: client.search_runs([exp.experiment_id], f"tags.`{TAG_KIND}` = 'trial'", max_results=1000, page_token=token))
        for run in page:
            row: dict[str, Any] = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time}
            row.update({f"tag:{k}": v for k, v in run.data.tags.items()})
            row.update(run.data.metrics)
            rows.append(row)
        token = page.token
        if not token:
            return rows


def list_experiments(tracking_uri: str) -> list[str]:
    client = _client(tracking_uri)
    return [e.name for e in retry(lambda: client.search_experiments())]


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """The argv that serves the MLflow UI on this store (no shell string)."""
    import sys

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)]
    art = default_artifact_root(tracking_uri)
    if art:
        cmd += ["--default-artifact-root", art]
    return cmd


def ui_url(tracking_uri: str, host: str, port: int, experiment: str) -> str:
    """The UI's address: the experiment's runs table in the headline view, or the home page before the first sweep."""
    base = f"http://{host}:{port}/#/"
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        return base
    try:
        exp = retry(lambda: _client(tracking_uri).get_experiment_by_name(experiment))
    except Exception as exc:  # MLflow raises many types for the same failure
        raise TrackingError(f"MLflow store {tracking_uri} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
    return f"{base}experiments/{exp.experiment_id}/runs?{UI_QUERY}" if exp else base


def serve_ui(cmd: list[str]) -> int:
    """Run the UI server in a session of its own until it exits, or until a stop signal stops it with its workers."""
    server = subprocess.Popen(cmd, env=os.environ.copy(), start_new_session=True)
    for sig in UI_STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)  # each one raises KeyboardInterrupt, also out of wait()
    try:
        return server.wait()
    except KeyboardInterrupt:
        for sig in UI_STOP_SIGNALS:  # one stop at a time; it ends within twice stop_group's grace
            signal.signal(sig, signal.SIG_IGN)
        stop_group(server)
        return 0


def stop_group(leader: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the leader's process group, SIGKILL to what is left after ``grace_s``; returns once the group is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            leader.poll()  # reaps the leader; its workers are reaped by init
            try:
                os.killpg(leader.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def load_sweep_params(tracking_uri: str, experiment: str) -> dict[str, dict[str, str]]:
    """Sweep name -> params of its parent run ('categories', 'variants', 'seeds', ...): the planned trials."""
    check_reachable(tracking_uri)
    client = _client(tracking_uri)
    exp = retry(lambda: client.get_experiment_by_name(experiment))
    if exp is None:
        raise TrackingError(f"no MLflow experiment '{experiment}' in {tracking_uri}")
    runs = retry(lambda: client.search_runs([exp.experiment_id], f"tags.`{TAG_KIND}` = 'sweep'", max_results=1000))
    return {r.data.tags.get(TAG_SWEEP, ""): dict(r.data.params) for r in runs}
