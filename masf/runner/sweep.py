"""``masf-bench run``: plan the trials, skip what is finished, run the rest on Ray Tune, log to MLflow.

The driver is the only MLflow writer (see tracking.py). Finished means: a
FINISHED child run with final metrics in MLflow, or a final checkpoint in the
sweep's storage folder that is logged now (the driver died between the two).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from rich.console import Console

import masf
from masf.config import build_config, flatten
from masf.errors import MasfError
from masf.layout import FEATURES_DIR, TRIAL_FILES
from masf.fingerprint import code_fingerprint, variant_fingerprint
from masf.metrics import SELECTION_METRICS, SELECTIONS
from masf.report.paper import dataset_name
from masf.config.readings import reading_of
from masf.runner import plan
from masf.runner.progress import SweepProgress, process_seconds
from masf.runner.tracking import Tracker, check_reachable, default_tracking_uri
from masf.errors import is_timeout
from masf.trial.sharing import Group, has_student, member_dir, plan_groups

EPOCH_KEYS = ("loss", "lr", "skipped_batches", "skipped_steps", "batches", "epoch_seconds", "eval_seconds",
              "val_eval_seconds", "composite")
METRIC_NAMES = SELECTION_METRICS  # the test metrics of an evaluated epoch; its validation metrics are "val/..."
SELECTION_PREFIXES = tuple(f"{s}/" for s in SELECTIONS) + ("val/", "student_only/")
RESULT_METRICS = (
    "best_epoch", "best_val_epoch", "skipped_batches", "skipped_steps", "total_batches", "train_seconds", "eval_seconds",
    "trial_seconds", "infer_ms_per_image", "infer_ms_per_image_ttsa", "test_images", "train_images", "val_images",
    "bank_seconds", "optimizer_steps", "calibration_images", "group_members", "feature_cache_hits", "feature_cache_misses",
    "feature_cache_writes", "feature_cache_full", "feature_cache_rejected", "trainable_parameters", "peak_rss_mb", "peak_cuda_mb",
)


@dataclass
class SweepOptions:
    categories: Optional[list[str]] = None
    all_categories: bool = False
    variants: Optional[list[str]] = None
    ablations: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    preset: str = "smoke"
    overrides: list[str] = field(default_factory=list)
    # the --data-root values: one PATH, or NAME=PATH per dataset (masf.runner.plan.parse_data_roots)
    data_roots: list[str] = field(default_factory=list)
    dataset: str = ""  # --dataset: what the data is (data.dataset); with datasets: run that entry alone
    # a suite's datasets: list (masf.runner.plan.check_datasets): a sweep across datasets, keys prefixed by the dataset
    datasets: Optional[list[dict[str, Any]]] = None
    suite: str = ""  # the suite's name, for messages
    skip_missing: bool = False  # a listed dataset without a root folder is skipped with a line, not an error
    address: Optional[str] = None
    tracking_uri: Optional[str] = None
    experiment: str = "masf-bench"
    storage: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: Optional[float] = None
    max_concurrent: int = 0
    max_failures: int = 2
    resume: bool = False
    # None: reuse worker processes on a local Ray (no per-trial start-up), a fresh process per trial
    # on a cluster (each trial's memory, GPU memory included, is released with its process)
    reuse_workers: Optional[bool] = None
    # trials that differ only in how they score share one training (masf/trial/sharing.py)
    share: bool = True
    # the teacher's features of the sweep's images, kept in STORAGE/feature-cache up to this size (0: in memory only)
    feature_cache_gb: float = 20.0

    def __post_init__(self) -> None:
        gb = self.feature_cache_gb
        if not (isinstance(gb, (int, float)) and math.isfinite(gb) and gb >= 0):
            shown = f"{gb:g}" if isinstance(gb, (int, float)) else repr(gb)
            raise MasfError(f"--feature-cache-gb: must be a size in GB >= 0 (0: in memory only), got {shown}")


@dataclass
class SweepSummary:
    name: str
    experiment: str
    tracking_uri: str
    storage: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    trial_seconds: float = 0.0
    concurrency: int = 1
    unlogged_events: int = 0
    variants: list[str] = field(default_factory=list)  # as planned, in order
    # seconds from the process start: imports, planned, teachers, store_open, ray_started, tune_started,
    # first_trial (Tune started it), first_trial_code (its worker has the trial code), first_report;
    # and at the close: trials_done, logged, leaderboard, flushed
    startup: dict[str, float] = field(default_factory=dict)
    frame: Any = field(default=None, repr=False)  # the sweep's trial rows as the leaderboard read them (masf/report/leaderboard.py)

    @property
    def efficiency(self) -> float:
        """Sum of trial times / (wall time x concurrent trials)."""
        return self.trial_seconds / (self.wall_seconds * self.concurrency) if self.wall_seconds > 0 else 0.0


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(masf.__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{masf.__version__}+{sha}" if sha else masf.__version__


class _Driver:
    """TrialEvents for Ray's callback: updates the live view and queues MLflow events."""

    def __init__(self, specs: dict[str, plan.TrialSpec], tracker: Tracker, progress: SweepProgress, summary: SweepSummary, version: str):
        self.specs, self.tracker, self.progress, self.summary, self.version = specs, tracker, progress, summary, version
        self.timeouts: dict[str, int] = {}  # key -> attempts the watchdog stopped (masf.timeouts tag)

    def _tags(self, key: str) -> dict[str, str]:
        s = self.specs[key]
        t = s.config["model"]["teacher"]
        return {
            "category": s.category, "variant": s.variant, "seed": str(s.seed), "preset": s.config["preset"],
            "backbone": t["name"], "weights_source": t["weights"], "method": s.config["model"]["method"],
            "dataset": dataset_name(s.config["data"].get("dataset")), "layout": str(s.config["data"].get("layout") or ""),
            "data_root": str(s.config["data"].get("root") or ""),
            "reading": reading_of(flatten(s.config)),
            "code_version": self.version, "code_fingerprint": code_fingerprint(),
            "config_fingerprint": s.fingerprint, "variant_fingerprint": variant_fingerprint(s.variant),
            **({"masf.timeouts": str(self.timeouts[key])} if self.timeouts.get(key) else {}),
        }

    def started(self, key: str, attempt: int) -> None:
        self.summary.startup.setdefault("first_trial", process_seconds())
        self.progress.started(key, attempt)
        params = flatten(self.specs[key].config)
        self.tracker.submit({"kind": "trial_start", "trial": key, "tags": {**self._tags(key), "attempts": str(attempt)},
                             "params": params, "time": time.time()})

    @staticmethod
    def _epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
        return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and (
            k in EPOCH_KEYS or k in METRIC_NAMES or k.startswith(("loss/", "fusion_weight/", "val/", "student_only/", "calib/")))}

    def _first_report(self, result: dict[str, Any]) -> None:
        """The start-up's last marks: the first trial's code loaded in its worker, its first report here."""
        if "trial_code_loaded" in result:
            self.summary.startup.setdefault("first_trial_code", process_seconds(float(result["trial_code_loaded"])))
        self.summary.startup.setdefault("first_report", process_seconds())

    def reported(self, key: str, result: dict[str, Any]) -> None:
        self._first_report(result)
        if result.get("final"):
            return  # completed() logs the final row
        self.progress.epoch(key, result)
        metrics = self._epoch_metrics(result)
        tags = {k: str(result[k]) for k in ("ray_node", "host", "device") if k in result}
        self.tracker.submit({"kind": "epoch", "trial": key, "step": int(result.get("epoch", 0)), "metrics": metrics,
                             "tags": tags, "time": time.time()})

    def completed(self, key: str, result: dict[str, Any], checkpoint_dir: Optional[str], count_seconds: bool = True) -> None:
        """``count_seconds`` False: a member of a training group whose seconds another member counted."""
        self._first_report(result)
        if result.get("trial_error"):
            self.failed(key, str(result["trial_error"]))
            return
        row = self._log_result(key, result, checkpoint_dir)
        if row is None:
            self.failed(key, "trial ended without a result")
            return
        self.progress.done(key, row)
        self.summary.done.append(key)
        if count_seconds:
            self.summary.trial_seconds += float(row.get("trial_seconds", 0.0))

    def recovered(self, key: str, checkpoint_dir: str) -> None:
        """A trial that finished before the driver stopped but was never logged: log it from its final checkpoint."""
        self.tracker.submit({"kind": "trial_start", "trial": key, "tags": self._tags(key),
                             "params": flatten(self.specs[key].config), "time": time.time()})
        if self._log_result(key, {}, checkpoint_dir) is None:
            self.failed(key, f"final checkpoint {checkpoint_dir} holds no result")
            return
        self.progress.skipped(key, "finished before the stop; its result is logged now")
        self.summary.skipped.append(key)

    def _log_result(self, key: str, result: dict[str, Any], checkpoint_dir: Optional[str]) -> Optional[dict[str, Any]]:
        """Queue the final metrics, per-epoch series of the last epoch, tags and artifacts; the row, or None."""
        row = dict(result)
        artifacts = []
        if checkpoint_dir and (Path(checkpoint_dir) / "result.json").exists():
            row = {**json.loads((Path(checkpoint_dir) / "result.json").read_text()), **{k: result[k] for k in ("ray_node", "host") if k in result}}
            artifacts = [(str(Path(checkpoint_dir) / name), "" if name != "figures" else "figures")
                         for name in TRIAL_FILES]
        if "last/image_auroc" not in row:
            return None
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and (k.startswith(SELECTION_PREFIXES) or k in RESULT_METRICS)}
        # 'skipped_batches' and 'skipped_steps' are the per-epoch series
        metrics["skipped_batches_total"] = metrics.pop("skipped_batches", 0)
        metrics["skipped_steps_total"] = metrics.pop("skipped_steps", 0)
        if checkpoint_dir and (Path(checkpoint_dir) / "history.json").exists():
            # the last epoch is reported with the final row: log its per-epoch series too
            last = json.loads((Path(checkpoint_dir) / "history.json").read_text())[-1]
            self.tracker.submit({"kind": "epoch", "trial": key, "step": int(last.get("epoch", 0)),
                                 "metrics": self._epoch_metrics(last), "tags": {}, "time": time.time()})
        tags = {**self._tags(key), **{k: str(row[k]) for k in ("device", "ray_node", "host", "val_source") if k in row}}
        if row.get("training_group"):  # scored from a shared training: which, and from which trial's run
            tags.update({"masf.training_group": str(row["training_group"]), "masf.scored_from": str(row["scored_from"]),
                         "training_fingerprint": str(row.get("training_fingerprint", ""))})
        self.tracker.submit({"kind": "trial_end", "trial": key, "step": int(row.get("epochs", 0)), "metrics": metrics,
                             "tags": tags, "artifacts": artifacts, "time": time.time(),
                             "run_tags": {"masf.scored_from_run": str(row["scored_from"])} if row.get("training_group") else {}})
        return row

    def _count_timeout(self, key: str, error: str) -> None:
        if is_timeout(error):  # the watchdog stopped this attempt (masf/runner/watchdog.py)
            self.timeouts[key] = self.timeouts.get(key, 0) + 1

    def failed(self, key: str, error: str) -> None:
        self._count_timeout(key, error)
        self.progress.failed(key, error)
        self.summary.failed[key] = error
        self.tracker.submit({"kind": "trial_failed", "trial": key, "error": error, "tags": self._tags(key), "time": time.time()})

    def retrying(self, key: str, error: str) -> None:
        self._count_timeout(key, error)
        self.progress.retrying(key, error)


class _Fanout:
    """TrialEvents of Tune trials, some of which are training groups, as events of the sweep's trials.

    A group's attempt starts, retries and fails for each member; each epoch report carries every member's
    record (``member_records``) and the final checkpoint every member's result folder (members/KEY).
    """

    def __init__(self, driver: _Driver, groups: dict[str, list[str]]):
        self.driver, self.groups = driver, groups

    def _members(self, key: str) -> list[str]:
        return self.groups.get(key, [key])

    def started(self, key: str, attempt: int) -> None:
        for k in self._members(key):
            self.driver.started(k, attempt)

    def reported(self, key: str, result: dict[str, Any]) -> None:
        if key not in self.groups:
            self.driver.reported(key, result)
            return
        if result.get("final"):
            return
        shared = {k: result[k] for k in ("ray_node", "host", "node_ip") if k in result}
        for k, record in json.loads(result.get("member_records") or "{}").items():
            self.driver.reported(k, {**record, **shared})

    def completed(self, key: str, result: dict[str, Any], checkpoint_dir: Optional[str]) -> None:
        if key not in self.groups or result.get("trial_error"):
            for k in self._members(key):
                self.driver.completed(k, result, checkpoint_dir)
            return
        rows = json.loads(result.get("member_rows") or "{}")
        shared = {k: result[k] for k in ("ray_node", "host") if k in result}
        for i, k in enumerate(rows):  # the members of this attempt (finished members of a resumed group are not in it)
            where = str(member_dir(checkpoint_dir, k)) if checkpoint_dir else None
            self.driver.completed(k, {**rows[k], **shared}, where, count_seconds=i == len(rows) - 1)  # the last: the group's time

    def failed(self, key: str, error: str) -> None:
        for k in self._members(key):
            self.driver.failed(k, error)

    def retrying(self, key: str, error: str) -> None:
        for k in self._members(key):
            self.driver.retrying(k, error)


RAY_LOG = "ray.log"  # Ray's and Tune's driver-side log lines, in the sweep's storage folder
STARTUP_FILE = "startup.json"  # the last run's StartupClock marks, start-up and close, in the same folder


class StartupClock:
    """Seconds from the process start (imports included) at each step before the first trial."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {"imports": process_seconds()}

    def mark(self, name: str) -> None:
        self.marks[name] = process_seconds()


class Background(threading.Thread):
    """``fn`` in a thread started now; :meth:`result` waits and re-raises what it raised."""

    def __init__(self, fn: Callable[[], None]):
        super().__init__(name="masf-preflight", daemon=True)
        self.fn, self.error = fn, None
        self.start()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:  # handed to the caller
            self.error = exc

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _preflight(trials: list[plan.TrialSpec], tracker: Tracker, params: dict[str, str], clock: StartupClock) -> None:
    """Check each distinct teacher (an unknown backbone or missing weights fail before any trial), open the store."""
    from masf.config import config_from_dict

    teachers = {json.dumps(t.config["model"]["teacher"], sort_keys=True): t for t in trials}
    for t in teachers.values():
        plan.check_teacher(config_from_dict(t.config))
    clock.mark("teachers")
    tracker.open(params=params)
    clock.mark("store_open")


def data_sources(opts: SweepOptions) -> tuple[list[plan.DataSource], list[str]]:
    """The sweep's data (one source, or a suite's datasets) and the lines to print about it. The declared dataset
    and the layout are --dataset, else data.dataset and data.layout of the preset and --set keys."""
    data = build_config(opts.preset, list(opts.overrides)).data
    if opts.datasets is not None:
        return plan.suite_sources(opts.datasets, opts.data_roots, opts.suite, opts.categories, opts.all_categories, opts.dataset,
                                  data.layout, opts.skip_missing)
    source, line = plan.single_source(opts.data_roots, opts.dataset or data.dataset, data.layout, opts.categories, opts.all_categories)
    return [source], [line] if line else []


def data_params(sources: list[plan.DataSource], scoped: bool) -> dict[str, str]:
    """The sweep run's params about its data: categories (as in the trial keys), data_root, dataset, layout."""
    if not scoped:
        s = sources[0]
        return {"categories": ",".join(s.categories), "data_root": str(s.root), "dataset": s.dataset, "layout": s.layout}
    return {"categories": ",".join(plan.scoped_categories(sources)), "data_root": " ".join(f"{s.dataset}={s.root}" for s in sources),
            "dataset": ",".join(s.dataset for s in sources), "layout": ",".join(s.layout for s in sources)}


def training_groups(trials: list[plan.TrialSpec]) -> list[Group]:
    """The trials that share one training (masf/trial/sharing.py), each group keyed by its trials' key category
    ("dataset/category" in a sweep across datasets), so that two datasets' groups never share a key."""
    return plan_groups([replace(t, category=t.scoped_category) for t in trials])


def run_sweep(opts: SweepOptions, console: Optional[Console] = None) -> SweepSummary:
    clock = StartupClock()
    console = console or Console(highlight=False)
    sources, lines = data_sources(opts)
    for line in lines:
        console.print(line, soft_wrap=True)
    scoped = opts.datasets is not None  # a sweep given as a list of datasets: keys carry the dataset
    variants = plan.resolve_variants(opts.variants, opts.ablations)
    trials = plan.plan_sources(sources, variants, opts.seeds, opts.preset, opts.overrides, scoped)
    name = plan.sweep_name(trials, opts.preset)
    data = data_params(sources, scoped)
    family = plan.sweep_family(data["data_root"], data["categories"].split(","), variants, opts.seeds, opts.preset, opts.overrides)
    storage = Path(opts.storage or Path.cwd() / "masf-runs").expanduser().resolve()
    if opts.resume:
        note = plan.changed_since(storage, name, family, trials)
        if note:
            console.print(f"[yellow]--resume: {note}[/]")
    tracking_uri = opts.tracking_uri or default_tracking_uri()
    summary = SweepSummary(name, opts.experiment, tracking_uri, str(storage / name), variants=variants, startup=clock.marks)
    clock.mark("planned")

    if opts.address:
        from masf.runner.ray_tune import probe

        probe(opts.address)  # an unreachable cluster fails before the store is touched
    check_reachable(tracking_uri)  # an unreachable store fails before anything is written or started
    tracker = Tracker(tracking_uri, opts.experiment, name, spool=storage / name / "tracking-spool.jsonl")
    params = {**data, "variants": ",".join(variants), "seeds": ",".join(map(str, opts.seeds)),
              "preset": opts.preset, "overrides": " ".join(opts.overrides)}
    # what needs no Ray (the teachers build, the MLflow store opens) runs while Ray starts
    preflight = Background(lambda: _preflight(trials, tracker, params, clock))
    if not opts.address and "ray" not in sys.modules:
        # a new local Ray: token authentication, Ray's own default there, asked for explicitly, so that
        # Ray makes the token where none exists and does not warn that it chose the mode itself.
        # Ray reads the mode as it is imported, hence before the import
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    from masf.runner import ray_tune

    resources = ray_tune.connect(opts.address, num_gpus=None, log_file=storage / name / RAY_LOG)
    clock.mark("ray_started")
    preflight.result()
    finished = tracker.finished_trials()
    other_code = sorted(k for k in finished if tracker.finished_code.get(k) not in ("", code_fingerprint()))
    if other_code and opts.resume:
        console.print(f"[yellow]--resume: {len(other_code)} finished trials were run by other code "
                      f"(code {tracker.finished_code[other_code[0]]}, now {code_fingerprint()}): {', '.join(other_code[:5])}"
                      f"{' ...' if len(other_code) > 5 else ''}; they are kept as they are (their runs say which code); "
                      "a fresh --experiment reruns them[/]")
    ckpts = ray_tune.find_checkpoints(storage / name)
    done_somewhere = set(finished) | {k for k, (_, final, _) in ckpts.items() if final}
    if done_somewhere and not opts.resume:
        raise MasfError(f"sweep {name} already has {len(done_somewhere)} finished trials (experiment '{opts.experiment}', "
                        f"storage {storage / name}): pass --resume to run only what is missing, or --experiment NEW "
                        "and --storage NEW for a fresh sweep")

    plan.write_plan(storage / name, family, trials)
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
    if gpus > resources.get("GPU", 0):
        raise MasfError(f"--gpus-per-trial {gpus} but the Ray cluster has {resources.get('GPU', 0):g} GPUs")
    slots = int(resources.get("CPU", 1) // opts.cpus_per_trial) if opts.cpus_per_trial > 0 else len(trials)
    if gpus > 0:
        slots = min(slots, int(resources.get("GPU", 0) // gpus))
    summary.concurrency = max(1, min(slots, opts.max_concurrent or slots, len(trials)))

    tracker.start()
    try:
        specs = {t.key: t for t in trials}
        groups = training_groups(trials) if opts.share else []
        in_group = {k: g for g in groups for k in g.members}
        training = {t.key: specs[in_group[t.key].lead].config if t.key in in_group else t.config for t in trials}
        epochs = {t.key: t.config["train"]["epochs"] if has_student(training[t.key]) else 0 for t in trials}
        cache = {"dir": str(storage / FEATURES_DIR), "limit_gb": opts.feature_cache_gb} if opts.feature_cache_gb > 0 else {}
        if not opts.resume:
            ckpts = {}  # a fresh sweep starts every trial from scratch
        start = time.time()
        with SweepProgress(list(specs), epochs, concurrency=summary.concurrency, console=console) as progress:
            driver = _Driver(specs, tracker, progress, summary, code_version())
            todo = []
            for key, spec in specs.items():
                if key in in_group:
                    continue
                found = ckpts.get(key)
                if key in finished:
                    progress.skipped(key, "already finished")
                    summary.skipped.append(key)
                elif found and found[1]:  # finished on Ray, never logged: log it, do not rerun
                    driver.recovered(key, str(found[2]))
                else:
                    todo.append({"key": key, "config": spec.config, "cpus": opts.cpus_per_trial, "feature_cache": cache,
                                 "resume_from": str(found[2]) if found else None})
            for g in groups:  # one training each; a member finished before is not scored again
                found = ckpts.get(g.key)
                left = []
                for key in g.members:
                    if key in finished:
                        progress.skipped(key, "already finished")
                        summary.skipped.append(key)
                    elif found and found[1] and (member_dir(found[2], key) / "result.json").exists():
                        driver.recovered(key, str(member_dir(found[2], key)))
                    else:
                        left.append(key)
                if left:
                    todo.append({"key": g.key, "config": specs[g.lead].config, "lead": g.lead, "cpus": opts.cpus_per_trial,
                                 "members": [{"key": k, "config": specs[k].config} for k in left], "feature_cache": cache,
                                 "resume_from": str(found[2]) if found else None})
            # the longest trials first (most epochs of training): the short ones (baselines, scoring only)
            # fill the slots at the end instead of leaving one slot idle while a long trial finishes
            todo.sort(key=lambda t: -epochs[t.get("lead", t["key"])])
            reuse = opts.address is None if opts.reuse_workers is None else opts.reuse_workers
            events = _Fanout(driver, {t["key"]: [m["key"] for m in t["members"]] for t in todo if "members" in t})
            clock.mark("tune_started")
            ray_tune.run_trials(todo, name, storage, events, opts.cpus_per_trial, gpus, opts.max_concurrent,
                                opts.max_failures, reuse_workers=reuse)
    except BaseException:
        tracker.stop(deadline_s=10.0)  # what the trials reported so far: logged, or kept in the spool
        raise
    summary.wall_seconds = time.time() - start
    clock.mark("trials_done")
    summary.unlogged_events = finish_sweep(tracker, summary, storage / name, console, clock)
    (storage / name / STARTUP_FILE).write_text(json.dumps(summary.startup, indent=1))
    return summary


def finish_sweep(tracker: Tracker, summary: SweepSummary, folder: Path, console: Console, clock: StartupClock) -> int:
    """Leaderboard onto the parent run, final flush; returns the events that could not be logged.
    ``clock``: marks 'logged' (the trials' events in the store), 'leaderboard' and 'flushed'."""
    mark = clock.mark
    artifacts, description = [], None
    tracker.stop(deadline_s=60.0)  # everything the trials reported, logged (or spooled)
    mark("logged")
    if not tracker.pending:
        try:
            from masf.report.figures import FIGURES
            from masf.report.store import load_frame, write_sweep_leaderboard

            summary.frame = load_frame(tracker.tracking_uri, tracker.experiment, tracker.sweep)
            paths = write_sweep_leaderboard(tracker.tracking_uri, tracker.experiment, folder, sweep=tracker.sweep, frame=summary.frame)
            artifacts = [(str(p), "leaderboard") for p in paths]
            # the parent run's description: the markdown leaderboard, the bar chart shown from its artifact
            description = {"markdown": str(paths[0]), "figure": f"leaderboard/{FIGURES[0]}"}
        except MasfError as exc:
            console.print(f"leaderboard not written: {exc}")
    mark("leaderboard")
    status = "FAILED" if summary.failed and not summary.done else "FINISHED"
    metrics = {"trials_done": len(summary.done), "trials_failed": len(summary.failed), "trials_skipped": len(summary.skipped),
               "wall_seconds": summary.wall_seconds, "sum_trial_seconds": summary.trial_seconds,
               "concurrency": summary.concurrency, "sweep_efficiency": summary.efficiency,
               **{f"startup/{k}_s": v for k, v in summary.startup.items()}}
    tracker.submit({"kind": "sweep_end", "metrics": metrics, "artifacts": artifacts, "status": status, "time": time.time(),
                    "tags": {"failed_trials": ",".join(sorted(summary.failed))[:5000]}, "description": description})
    left = tracker.flush(deadline_s=60.0)
    mark("flushed")
    return left
