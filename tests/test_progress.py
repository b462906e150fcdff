"""The sweep's progress view: plain lines off a terminal, a live table with counts and ETA on one."""

from __future__ import annotations

import io

from rich.console import Console

from masf.runner.progress import SweepProgress


def _events(p: SweepProgress) -> None:
    p.skipped("a/full/seed0", "already finished")
    p.started("b/full/seed0", 1)
    p.epoch("b/full/seed0", {"epoch": 1, "loss": 0.5, "skipped_batches": 2})
    p.epoch("b/full/seed0", {"epoch": 2, "image_auroc": 0.91, "pixel_auroc": 0.95})
    p.done("b/full/seed0", {"trial_seconds": 10.0, "last/image_auroc": 0.9, "last/pixel_auroc": 0.95, "last/pro": 0.8})
    p.started("c/full/seed0", 1)
    p.retrying("c/full/seed0", "RayActorError: node died")
    p.started("c/full/seed0", 2)
    p.failed("c/full/seed0", "DataError: x.png: cannot decode image")


def test_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    keys = ["a/full/seed0", "b/full/seed0", "c/full/seed0", "d/full/seed0"]
    with SweepProgress(keys, {k: 2 for k in keys}, console=Console(file=buf, width=200)) as p:
        assert p.live_view is False
        _events(p)
        assert p.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 1, "skipped": 1}
        assert p.eta_seconds() == 10.0  # one trial left, 10 s per trial, one at a time
    out = buf.getvalue()
    assert "b/full/seed0: epoch 1/2 loss 0.5000 skipped 2" in out
    assert "b/full/seed0: done in 10.0 s" in out and "(attempt 2)" in out
    assert "retrying from its last checkpoint after: RayActorError: node died" in out
    assert "c/full/seed0: FAILED: DataError: x.png: cannot decode image" in out


def test_live_table_on_a_terminal():
    buf = io.StringIO()
    keys = ["a/full/seed0", "b/full/seed0", "c/full/seed0", "d/full/seed0"]
    console = Console(file=buf, width=160, force_terminal=True)
    with SweepProgress(keys, {k: 2 for k in keys}, concurrency=2, console=console, live_view=True) as p:
        _events(p)
        view = Console(file=io.StringIO(), width=160, record=True)
        view.print(p.render())
        rendered = view.export_text()
    assert "trials 4: 1 pending, 0 running, 1 done, 1 failed, 1 already done" in rendered and "ETA 5 s" in rendered
    assert "c/full/seed0" in rendered and "failed" in rendered and "img 0.900 px 0.950 pro 0.800" in rendered
