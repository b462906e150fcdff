"""Scoring-only variants share one training; the teacher's features are cached; both exactly, never approximately."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from masf.config import build_config
from masf.method.feature_cache import FeatureCache
from masf.fingerprint import config_fingerprint
from masf.method.model import MASF, build_detector
from masf.trial.sharing import plan_groups, scoring_only, training_fingerprint, training_part
from masf.trial.trainer import CHECKPOINT, Trainer
from masf.trial.run import build_datasets, cached_teacher, run_group, run_trial
from masf.config.variants import get_variant, list_variants

SCORED = ("last/", "best_on_val/", "best_on_test/", "val/", "student_only/", "val/student_only/")
GROUP = ["full", "no_ttsa", "no_samb", "bank_only"]


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(SCORED)}


def _trials(variants, seeds=(0,), **overrides):
    out = []
    for v in variants:
        for s in seeds:
            cfg = build_config(None, {"data.root": "/data", "train.seed": s, **overrides}, variant=v)
            out.append(SimpleNamespace(key=f"bottle/{v}/seed{s}", category="bottle", variant=v, seed=s, config=cfg.to_dict()))
    return out


def test_the_registry_groups_by_its_keys_not_by_names():
    groups = plan_groups(_trials(list_variants(), seeds=(0, 1)))
    assert sorted((g.lead, g.members) for g in groups) == [
        (f"bottle/full/seed{s}", tuple(f"bottle/{v}/seed{s}" for v in ("full", "no_samb", "no_ttsa", "bank_only")))
        for s in (0, 1)
    ]
    assert [g.key for g in groups] == ["bottle/full+3/seed0", "bottle/full+3/seed1"]
    # what decides: every switch of a grouped variant is a scoring key, every other variant has a training switch
    for name in list_variants():
        scoring = all(scoring_only(k) for k in get_variant(name).switches)
        assert scoring == (name in GROUP), name
    assert not scoring_only("model.ughf.learned") and scoring_only("model.ughf.blur_sigma") and scoring_only("model.ttsa.views")
    # a scoring key moved by --set still shares; a training key does not; neither do seeds
    base = build_config(None, {"data.root": "/data"})
    assert training_fingerprint(build_config(None, {"data.root": "/data", "model.ttsa.views": 9})) == training_fingerprint(base)
    assert training_fingerprint(build_config(None, {"data.root": "/data", "model.sdm.low_ratio": 0.2})) != training_fingerprint(base)
    assert training_fingerprint(build_config(None, {"data.root": "/data", "train.seed": 1})) != training_fingerprint(base)
    assert "train.threads" not in training_part(base) and "variant" not in training_part(base)


def test_a_group_trains_once_and_each_member_equals_its_trial_alone(synth_root, tiny, tmp_path, monkeypatch):
    overrides = {**tiny(synth_root), "train.epochs": 3, "eval.every": 1, "eval.timing_images": 0}
    cfgs = {v: build_config(None, overrides, variant=v) for v in GROUP}
    steps = []
    real = MASF.training_loss
    monkeypatch.setattr(MASF, "training_loss", lambda self, *a, **k: steps.append(1) or real(self, *a, **k))

    rows = run_group(cfgs["full"], [(f"bottle/{v}/seed0", c) for v, c in cfgs.items()], tmp_path / "group",
                     group="bottle/full+3/seed0", lead_key="bottle/full/seed0", feature_cache=FeatureCache())
    group_steps = len(steps)
    assert group_steps == rows["bottle/full/seed0"]["total_batches"] > 0  # one training for four results

    steps.clear()
    alone = {v: run_trial(c, tmp_path / v) for v, c in cfgs.items()}
    assert len(steps) == 3 * group_steps  # full, no_ttsa and no_samb train alone; bank_only trains nothing
    for v in GROUP:
        row = rows[f"bottle/{v}/seed0"]
        assert row["scored_from"] == "bottle/full/seed0" and row["training_group"] == "bottle/full+3/seed0"
        assert _metrics(row) == _metrics(alone[v]), v  # exactly: the same weights, the same scoring
        history = json.loads((tmp_path / "group" / "members" / f"bottle__{v}__seed0" / "history.json").read_text())
        assert [h["epoch"] for h in history] == [1, 2, 3] and all("val/composite" in h for h in history)
    assert _metrics(rows["bottle/no_ttsa/seed0"]) != _metrics(rows["bottle/full/seed0"])  # scored two ways

    # by hand: the group's checkpoint loaded into a no_ttsa detector, calibrated and scored
    cfg = cfgs["no_ttsa"]
    teacher = cached_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    torch.manual_seed(0)
    model = build_detector(cfg.model, teacher, seed=0)
    state = torch.load(tmp_path / "group" / CHECKPOINT, weights_only=True)
    model.load_state_dict(state["model"], strict=False)
    model.load_fitted_state(state["member_fitted"][state["members"][config_fingerprint(cfg)]["fitted"]])
    trainer = Trainer(cfg, model, train, test, tmp_path / "by-hand", val_set=val)
    _, record = trainer.evaluate_splits()
    assert {k: record[k] for k in ("image_auroc", "pixel_auroc", "pro")} == \
        {k: rows["bottle/no_ttsa/seed0"][f"last/{k}"] for k in ("image_auroc", "pixel_auroc", "pro")}


def test_a_group_refuses_a_member_that_trains_differently(synth_root, tiny, tmp_path):
    lead = build_config(None, tiny(synth_root))
    other = build_config(None, tiny(synth_root), variant="no_ughf")
    with pytest.raises(Exception, match="training part differs"):
        run_group(lead, [("bottle/no_ughf/seed0", other)], tmp_path, group="g")


def test_cached_teacher_features_give_identical_results(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "eval.timing_images": 0})
    plain = run_trial(cfg, tmp_path / "none")
    first = FeatureCache(root=tmp_path / "cache")
    filled = run_trial(cfg, tmp_path / "fill", feature_cache=first)
    again = FeatureCache(root=tmp_path / "cache", memory_bytes=0)  # every feature read back from disk
    served = run_trial(cfg, tmp_path / "served", feature_cache=again)
    assert _metrics(plain) == _metrics(filled) == _metrics(served)
    assert first.writes > 0 and again.misses == 0 and again.hits > 0 and again.writes == 0
    patchcore = build_config(None, {**tiny(synth_root), "eval.timing_images": 0}, variant="patchcore")
    assert _metrics(run_trial(patchcore, tmp_path / "pc", feature_cache=FeatureCache(root=tmp_path / "cache"))) == \
        _metrics(run_trial(patchcore, tmp_path / "pc-none"))


def test_a_full_cache_stops_writing_and_changes_nothing(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0})
    small = FeatureCache(root=tmp_path / "cache", limit_bytes=64 * 1024, memory_bytes=0)
    with pytest.warns(UserWarning, match="reached its limit"):
        row = run_trial(cfg, tmp_path / "a", feature_cache=small)
    assert small.full and 0 < small.writes < small.misses
    assert sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.pt")) <= 64 * 1024
    assert _metrics(row) == _metrics(run_trial(cfg, tmp_path / "b"))


def test_a_group_checkpoint_belongs_to_its_training(synth_root, tiny, tmp_path):
    from masf.trial.trainer import CheckpointMismatch

    one = {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0}
    lead = build_config(None, one)
    run_group(lead, [("bottle/full/seed0", lead), ("bottle/no_ttsa/seed0", build_config(None, one, variant="no_ttsa"))],
              tmp_path, group="bottle/full+1/seed0", lead_key="bottle/full/seed0")
    assert json.loads((tmp_path / "members" / "bottle__no_ttsa__seed0" / "result.json").read_text())["training_group"] == \
        "bottle/full+1/seed0"
    other = build_config(None, {**one, "train.seed": 3})  # another training into the same folder: refused, in one line
    with pytest.raises(CheckpointMismatch, match="belongs to another configuration") as err:
        run_group(other, [("bottle/full/seed3", other)], tmp_path, group="bottle/full+1/seed3", lead_key="bottle/full/seed3")
    assert "\n" not in str(err.value)


def test_members_that_score_alike_but_for_ttsa_share_their_timings(synth_root, tiny, tmp_path):
    one = {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 2}
    cfgs = {v: build_config(None, one, variant=v) for v in ("full", "no_ttsa", "bank_only")}
    rows = run_group(cfgs["full"], [(f"bottle/{v}/seed0", c) for v, c in cfgs.items()], tmp_path,
                     group="bottle/full+2/seed0", lead_key="bottle/full/seed0")
    full, no_ttsa, bank_only = (rows[f"bottle/{v}/seed0"] for v in cfgs)
    for key in ("infer_ms_per_image", "infer_ms_per_image_ttsa"):  # timed once: the same computation
        assert full[key] == no_ttsa[key] > 0
        assert bank_only[key] > 0 and bank_only[key] != full[key]  # another scoring: timed on its own
