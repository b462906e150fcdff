"""eval.test_split=selected (masf/trial/deferred.py): the test split scored only where last and best_on_val need
it, with the same numbers as scoring it at every evaluation; best_on_test then says it is not available."""

from __future__ import annotations

import pytest

from masf.config import build_config
from masf.trial.run import run_group, run_trial

KEPT = ("last/", "best_on_val/", "val/", "student_only/", "val/student_only/")
GROUP = ("full", "no_ttsa", "bank_only")


def _kept(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(KEPT)}


def _group(synth_root, tiny, out, split):
    overrides = {**tiny(synth_root), "train.epochs": 3, "eval.every": 1, "eval.timing_images": 0, "eval.figures": False,
                 "eval.test_split": split}
    cfgs = {v: build_config(None, overrides, variant=v) for v in GROUP}
    return run_group(cfgs["full"], [(f"bottle/{v}/seed0", c) for v, c in cfgs.items()], out,
                     group="bottle/full+2/seed0", lead_key="bottle/full/seed0")


@pytest.mark.slow
def test_selected_gives_the_numbers_of_every_and_no_best_on_test(synth_root, tiny, tmp_path):
    every = _group(synth_root, tiny, tmp_path / "every", "every")
    selected = _group(synth_root, tiny, tmp_path / "selected", "selected")
    for key in every:
        assert _kept(selected[key]) == _kept(every[key]), key  # exactly: the same states, views and masks
        assert selected[key]["best_val_epoch"] == every[key]["best_val_epoch"]
        assert every[key]["best_on_test_available"] == 1 and selected[key]["best_on_test_available"] == 0
        assert not any(k.startswith("best_on_test/") for k in selected[key]) and selected[key]["best_epoch"] is None
    # bank_only's scoring does not change with training: validation ranks its epochs equal and picks the first,
    # whose test split was then scored from that epoch's copy
    assert selected["bottle/bank_only/seed0"]["best_val_epoch"] == 1
    assert selected["bottle/bank_only/seed0"]["best_on_val/image_auroc"] == every["bottle/bank_only/seed0"]["best_on_val/image_auroc"]


@pytest.mark.slow
def test_a_resumed_trial_scores_its_deferred_epoch_from_the_checkpoint(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 2, "eval.every": 1, "eval.timing_images": 0,
                              "eval.figures": False, "eval.test_split": "selected", "model.ughf.cos_weight": 0.0,
                              "model.samb.scales": None})  # the bank at every scale: its fused map moves with no weight
    first = run_trial(cfg, tmp_path / "t")  # cos_weight 0: the score is the banks', equal at both epochs: epoch 1 is picked
    assert first["best_val_epoch"] == 1
    again = run_trial(cfg, tmp_path / "t", resume=True)  # the checkpoint holds epoch 1's copy
    assert _kept(again) == _kept(first) and again["best_val_epoch"] == 1
