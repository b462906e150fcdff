"""What MLflow's UI shows of a sweep (experiment kind, run names, the headline view, the sweep run's description);
`masf-bench ui` itself, in a browser and stopped by a signal, is tested in tests/test_ui_browser.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

from masf.runner.tracking import (KIND, KIND_TAG, NOTE_LIMIT, NOTE_TAG, UI_QUERY, VIEW_ID, VIEW_METRICS, VIEW_TAG_PREFIX,
                                  Tracker, leaderboard_note, load_trial_runs, trial_run_name, ui_url)

HEADLINE = ["metrics.`last/image_auroc`", "metrics.`last/pixel_auroc`", "metrics.`last/pro`", "metrics.`last/image_ap`"]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _trial(tracker: Tracker, key: str, auroc: float) -> None:
    category, variant, seed = key.split("/")
    tags = {"category": category, "variant": variant, "seed": seed.removeprefix("seed")}
    tracker.submit({"kind": "trial_start", "trial": key, "tags": tags, "params": {"train.seed": 0}, "time": time.time()})
    tracker.submit({"kind": "trial_end", "trial": key, "step": 1, "tags": tags, "time": time.time(),
                    "metrics": {"last/image_auroc": auroc, "last/pixel_auroc": auroc, "last/pro": auroc, "last/image_ap": auroc}})


def test_the_view_shows_the_leaderboards_metrics():
    from masf.report.leaderboard import DEFAULT_METRICS

    assert VIEW_METRICS == DEFAULT_METRICS


def test_trial_run_names():
    assert trial_run_name("bottle/full/seed0") == "bottle/full/0"
    assert trial_run_name("screw/no_ttsa/seed12") == "screw/no_ttsa/12"
    assert trial_run_name("odd-key") == "odd-key"


def test_sweep_store_opens_as_model_training_with_flat_named_trial_runs(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "X", "sw").open(params={"categories": "bottle", "variants": "full", "seeds": "0"})
    _trial(tracker, "bottle/full/seed0", 0.9)
    assert tracker.flush() == 0
    client = _client(uri)
    exp = client.get_experiment_by_name("X")
    assert exp.tags[KIND_TAG] == KIND == "custom_model_development"
    view = json.loads(exp.tags[VIEW_TAG_PREFIX + VIEW_ID])
    state = json.loads(view["state"])
    assert state["selectedColumns"] == state["columnOrder"] == ["tags.`category`", "tags.`variant`", *HEADLINE]
    assert state["orderByKey"] == HEADLINE[0] and state["orderByAsc"] is False and view["name"]
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"sweep sw", "bottle/full/0"}
    assert "mlflow.parentRunId" not in runs["bottle/full/0"].data.tags  # top level: never folded away in the table
    (row,) = load_trial_runs(uri, "X")  # what the leaderboard reads
    assert row["tag:masf.trial_key"] == "bottle/full/seed0" and row["last/image_auroc"] == 0.9
    assert ui_url(uri, "127.0.0.1", 5000, "X") == f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?{UI_QUERY}"
    assert ui_url(uri, "127.0.0.1", 5000, "none") == "http://127.0.0.1:5000/#/"
    assert ui_url(f"sqlite:///{tmp_path / 'absent.db'}", "h", 1, "X") == "http://h:1/#/"
    assert not (tmp_path / "absent.db").exists()


def test_an_older_experiment_gets_the_kind_and_the_view_and_keeps_a_chosen_kind(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    old, chosen = client.create_experiment("old"), client.create_experiment("chosen")
    client.set_experiment_tag(chosen, KIND_TAG, "genai_development")
    for name in ("old", "chosen"):
        Tracker(uri, name, "sw").open()
    assert client.get_experiment(old).tags[KIND_TAG] == KIND
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"
    assert VIEW_TAG_PREFIX + VIEW_ID in client.get_experiment(chosen).tags


def test_the_sweep_run_describes_its_leaderboard(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "X", "sw").open()
    board = tmp_path / "leaderboard.md"
    board.write_text("# masf-bench leaderboard\n\n## last epoch (headline)\n\n| a |\n|---|\n| 1 |\n## validation-selected\n\n| b |\n")
    tracker.submit({"kind": "sweep_end", "metrics": {}, "artifacts": [], "status": "FINISHED", "time": time.time(), "tags": {},
                    "description": {"markdown": str(board), "figure": "leaderboard/category_bars.png"}})
    assert tracker.flush() == 0
    note = _client(uri).get_run(tracker.parent_run_id).data.tags[NOTE_TAG]
    assert note.startswith("# masf-bench leaderboard\n\n![category_bars](get-artifact?path=leaderboard%2Fcategory_bars.png"
                           f"&run_uuid={tracker.parent_run_id})\n\n## last epoch (headline)\n\n| a |")
    assert "validation-selected" not in note and note.endswith("artifacts `leaderboard/`.")


def test_a_long_leaderboard_is_cut_between_tables_to_fit_the_tag():
    table = "| category | image AUROC |\n|---|---:|\n" + "| bottle | 99.00 |\n" * 40
    md = "# masf-bench leaderboard\n\n## last epoch (headline)\n\n" + "\n".join(f"### v{i}\n\n{table}" for i in range(30))
    note = leaderboard_note(md, "r" * 32, "leaderboard/category_bars.png")
    assert len(note) <= NOTE_LIMIT and "### v0" in note and "### v29" not in note
    assert note.split("\n\nEvery selection")[0].endswith("| bottle | 99.00 |")  # whole tables only
