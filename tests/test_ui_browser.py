"""`masf-bench ui` on a finished sweep: in a real browser (headless Chromium; skipped where there is none) its link
opens the runs table with the trials by name and their headline metrics, and the sweep run's page shows the
leaderboard and its bar chart; then SIGTERM stops it with its server and the server's workers (one server for all)."""

from __future__ import annotations

import html
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from masf.runner.tracking import NOTE_TAG, load_trial_runs, trial_run_name
from services import free_port, wait_for

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.slow
browser = pytest.mark.skipif(BROWSER is None, reason="no chromium, chromium-browser or google-chrome on PATH")
HEADLINE = ("last/image_auroc", "last/pixel_auroc", "last/pro", "last/image_ap")


def _dom(url: str, profile: Path) -> str:
    """The page after its scripts ran (a virtual-time budget lets the app fetch and render)."""
    out = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                          "--window-size=1920,1080", "--virtual-time-budget=30000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _text(dom: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


def _js(value: float) -> str:
    """A number as the UI prints it (JavaScript's shortest form: 1, not 1.0)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


@pytest.fixture(scope="module")
def ui(finished_sweep, tmp_path_factory) -> Iterator[dict]:
    """`masf-bench ui` on the finished sweep's store (in a session of its own, so a signal reaches it alone); its link."""
    port, log = free_port(), tmp_path_factory.mktemp("ui") / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "masf.cli.main", "ui", "--port", str(port), "-e", finished_sweep["experiment"]],
                                cwd=finished_sweep["cwd"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/health"), 180, "masf-bench ui")
        children = psutil.Process(proc.pid).children(recursive=True)
        yield {"link": re.search(r"MLflow UI on (\S+)", log.read_text()).group(1), "base": f"http://127.0.0.1:{port}/",
               "proc": proc, "port": port, "children": children}
    finally:
        for p in [proc, *_alive(children)]:  # what the SIGTERM test left (it failed, or did not run)
            p.kill()


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@browser
def test_runs_table_shows_the_trials_by_name_with_their_headline_metrics(finished_sweep, ui, tmp_path):
    assert "/runs?viewStateShareKey=masf-headline&workflowType=machine_learning" in ui["link"]
    text = _text(_dom(ui["link"], tmp_path / "profile"))
    assert " Run Name " in text and " masf headline " in text  # the runs table (not GenAI traces) in the saved view
    runs = load_trial_runs(f"sqlite:///{finished_sweep['cwd'] / 'mlflow.db'}", finished_sweep["experiment"])
    assert len(runs) == 6
    for run in runs:
        name = trial_run_name(run["tag:masf.trial_key"])
        assert f" {name} " in text, name
        if run["status"] == "FINISHED":
            for metric in HEADLINE:
                assert f" {_js(run[metric])} " in text, (name, metric, run[metric])
    for column in ("category", "variant", *HEADLINE):
        assert f" {column} " in text, column


@browser
def test_sweep_run_page_shows_the_leaderboard_and_its_bar_chart(finished_sweep, ui, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{finished_sweep['cwd'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name(finished_sweep["experiment"])
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`masf.kind` = 'sweep'")
    assert sweep.info.run_name.startswith("sweep ") and "## last epoch (headline)" in sweep.data.tags[NOTE_TAG]
    dom = _dom(f"{ui['base']}#/experiments/{exp.experiment_id}/runs/{sweep.info.run_id}?workflowType=machine_learning",
               tmp_path / "profile")
    assert "masf-bench leaderboard" in _text(dom) and "<table>" in dom
    src = html.unescape(re.search(r'<img src="(get-artifact\?path=leaderboard%2Fcategory_bars\.png[^"]*)"', dom).group(1))
    with urllib.request.urlopen(ui["base"] + src, timeout=30) as r:
        assert r.read(8) == b"\x89PNG\r\n\x1a\n"


def test_ui_stopped_by_sigterm_stops_its_server_and_workers(ui):
    """Last in this file: it stops the module's server."""
    proc, children = ui["proc"], ui["children"]
    assert len(children) >= 3, [c.cmdline() for c in children]  # the server and its workers
    proc.send_signal(signal.SIGTERM)  # masf-bench alone: the server runs in a session of its own
    assert proc.wait(timeout=60) == 0
    assert not [c.cmdline() for c in _alive(children)]
    assert not [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == ui["port"]]
