"""The sweep's live view: pending / running / done / failed, per-trial epoch and latest metric, ETA.

A rich Live table on a terminal; one plain line per event otherwise (CI, logs).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from masf.errors import TIMED_OUT, is_timeout

_IMPORTED = time.time()


def _process_start() -> float:
    """The wall-clock time this process started (Linux: /proc), else when this module was imported."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_STARTED = _process_start()


def process_seconds(at: Optional[float] = None) -> float:
    """Seconds since this process started (imports included, so a sweep's start-up can be told apart)
    until now, or until the wall-clock time ``at`` (a worker's clock: the same machine's)."""
    return round((time.time() if at is None else at) - _STARTED, 3)


@dataclass
class TrialRow:
    key: str
    state: str = "pending"  # pending, running, done, failed, skipped
    epoch: int = 0
    epochs: int = 0
    metric: str = ""
    started: Optional[float] = None
    seconds: float = 0.0
    attempts: int = 0
    note: str = ""
    timeouts: int = 0  # attempts the watchdog stopped
    timed_out: bool = False  # failed because the watchdog stopped its last attempt


@dataclass
class SweepProgress:
    keys: list[str]
    epochs: dict[str, int]
    concurrency: int = 1
    console: Console = field(default_factory=lambda: Console(highlight=False))
    live_view: Optional[bool] = None  # None: live only on a terminal
    rows: dict[str, TrialRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {k: TrialRow(k, epochs=self.epochs.get(k, 0)) for k in self.keys}
        if self.live_view is None:
            self.live_view = self.console.is_terminal and sys.stdout.isatty()
        self.start = time.time()
        self._live: Optional[Live] = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SweepProgress":
        if self.live_view:
            self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self._live = None

    def _changed(self, line: str, style: str = "") -> None:
        if self._live:
            self._live.update(self.render())
        else:
            self.console.print(Text(f"[{time.strftime('%H:%M:%S')}] {line}", style=style), soft_wrap=True)

    # ------------------------------------------------------------ events

    def skipped(self, key: str, why: str) -> None:
        row = self.rows[key]
        row.state, row.note = "skipped", why
        self._changed(f"{key}: {why}", "dim")

    def started(self, key: str, attempt: int) -> None:
        row = self.rows[key]
        row.state, row.started, row.attempts = "running", time.time(), attempt
        self._changed(f"{key}: started" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def epoch(self, key: str, result: dict[str, Any]) -> None:
        row = self.rows[key]
        row.state = "running"
        row.epoch = int(result.get("epoch", row.epoch))
        if "image_auroc" in result:
            row.metric = f"img {result['image_auroc']:.3f} px {result['pixel_auroc']:.3f}"
        elif "loss" in result:
            row.metric = f"loss {result['loss']:.4f}"
        skipped = result.get("skipped_batches", 0)
        note = f" skipped {skipped}" if skipped else ""
        self._changed(f"{key}: epoch {row.epoch}/{row.epochs} {row.metric}{note}")

    def done(self, key: str, row_data: dict[str, Any]) -> None:
        row = self.rows[key]
        row.state = "done"
        row.seconds = float(row_data.get("trial_seconds", time.time() - (row.started or time.time())))
        if "last/image_auroc" in row_data:
            row.metric = f"img {row_data['last/image_auroc']:.3f} px {row_data['last/pixel_auroc']:.3f} pro {row_data['last/pro']:.3f}"
        self._changed(f"{key}: done in {row.seconds:.1f} s  {row.metric}", "green")

    def failed(self, key: str, error: str) -> None:
        row = self.rows[key]
        row.state, row.note, row.timed_out = "failed", error, is_timeout(error)
        row.timeouts += row.timed_out
        self._changed(f"{key}: FAILED: {error}", "red")

    def retrying(self, key: str, error: str) -> None:
        row = self.rows[key]
        row.note = f"retry after: {error}"
        row.timeouts += is_timeout(error)
        self._changed(f"{key}: retrying from its last checkpoint after: {error}", "yellow")

    # ------------------------------------------------------------ view

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pending", "running", "done", "failed", "skipped")}
        for r in self.rows.values():
            out[r.state] += 1
        return out

    def eta_seconds(self) -> Optional[float]:
        finished = [r.seconds for r in self.rows.values() if r.state == "done" and r.seconds > 0]
        left = sum(1 for r in self.rows.values() if r.state in ("pending", "running"))
        if not finished or not left:
            return None
        return left * (sum(finished) / len(finished)) / max(1, self.concurrency)

    def render(self) -> Group:
        c = self.counts()
        eta = self.eta_seconds()
        timed_out = sum(r.timed_out for r in self.rows.values())
        head = Text(
            f"trials {len(self.rows)}: {c['pending']} pending, {c['running']} running, {c['done']} done, "
            f"{c['failed']} failed" + (f" ({timed_out} {TIMED_OUT})" if timed_out else "")
            + (f", {c['skipped']} already done" if c["skipped"] else "")
            + f"   elapsed {time.time() - self.start:.0f} s" + (f"   ETA {eta:.0f} s" if eta else "")
        )
        table = Table(box=None, pad_edge=False)
        for col in ("trial", "state", "epoch", "latest", "note"):
            table.add_column(col)
        colours = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim", "skipped": "dim"}
        active = [r for r in self.rows.values() if r.state in ("running", "failed")]
        recent = [r for r in self.rows.values() if r.state == "done"][-5:]
        for r in active + recent:
            state = TIMED_OUT if r.timed_out else r.state + (f" ({r.timeouts} {TIMED_OUT})" if r.timeouts else "")
            table.add_row(r.key, Text(state, style=colours[r.state]), f"{r.epoch}/{r.epochs}", r.metric, r.note[:80])
        return Group(head, table)
