"""The command line end to end, as a user types it."""

from __future__ import annotations

import json

import pytest

from services import cli


def test_help_lists_the_commands(tmp_path):
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("run", "train", "leaderboard", "ui", "data", "variants"):
        assert command in out.stdout


@pytest.mark.slow
def test_train_smoke_end_to_end(synth_root, tmp_path):
    out = cli("train", "--data-root", str(synth_root), "-c", "carpet", "--preset", "smoke", "--variant", "no_sdm",
              "--seed", "3", "--out", str(tmp_path / "t"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "carpet / no_sdm / seed 3" in out.stdout and "best_on_test" in out.stdout and "image_auroc" in out.stdout
    row = json.loads((tmp_path / "t" / "result.json").read_text())
    assert row["variant"] == "no_sdm" and row["seed"] == 3 and row["preset"] == "smoke"
    assert (tmp_path / "t" / "figures" / "heatmaps.png").is_file()
    assert "best_on_val" in out.stdout and "validation split" in out.stdout
    # another configuration into the same folder: one line naming both, nothing overwritten
    again = cli("train", "--data-root", str(synth_root), "-c", "carpet", "--preset", "smoke", "--variant", "no_ttsa",
                "--seed", "5", "--out", str(tmp_path / "t"), cwd=tmp_path)
    lines = [l for l in again.stderr.strip().splitlines() if l.strip()]
    assert again.returncode == 1 and len(lines) == 1, again.stdout + again.stderr
    assert "carpet / no_sdm / seed 3" in lines[0] and "carpet / no_ttsa / seed 5" in lines[0] and "--restart" in lines[0]
    assert json.loads((tmp_path / "t" / "result.json").read_text()) == row


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--variant", "nope"], "unknown variant 'nope'"),
        (["--set", "train.epochz=2"], "unknown config key 'train.epochz'"),
        (["--set", "train.epochs=two"], "train.epochs: expected int"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["-c", "../etc"], "'../etc'"),
        (["-c", "zipper"], "unknown category 'zipper'"),
    ],
)
def test_train_bad_input_is_one_line(synth_root, tmp_path, args, culprit):
    base = {"-c": "bottle", "--preset": "smoke"}
    argv = ["train", "--data-root", str(synth_root), "--out", str(tmp_path / "o")]
    given = dict(zip(args[::2], args[1::2]))
    for flag, value in {**base, **given}.items():
        argv += [flag, value]
    out = cli(*argv, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and culprit in lines[0], out.stderr
