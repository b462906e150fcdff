"""No silent reuse: checkpoints, results and sweeps carry the fingerprint of what produced them."""

from __future__ import annotations

import pytest
import torch
import yaml

from masf.report import leaderboard as lb
from masf import resources
from masf.config import variants
from masf.config import ConfigError, build_config, preset_path
from masf.fingerprint import code_fingerprint, config_fingerprint, source_fingerprint, variant_fingerprint
from masf.method.model import MASF
from masf.runner import plan
from masf.method.teacher import build_teacher
from masf.trial.trainer import CheckpointMismatch, Trainer
from masf.trial.run import build_datasets, run_trial


def test_config_fingerprint_sees_what_is_computed_not_how_fast():
    base = build_config("smoke")
    fp = config_fingerprint(base)
    assert len(fp) == 16 and fp == config_fingerprint(base.to_dict())
    assert config_fingerprint(build_config("smoke", ["train.threads=2", "eval.figures=false", "data.eval_batch_size=3"])) == fp
    assert config_fingerprint(build_config("smoke", ["model.samb.k=5"])) != fp
    assert config_fingerprint(build_config("smoke", ["train.seed=1"])) != fp
    assert config_fingerprint(build_config("smoke", ["data.seed=1"])) != fp


def test_a_changed_variant_definition_is_another_configuration(tmp_path, monkeypatch):
    before = config_fingerprint(build_config("smoke", variant="no_ttsa")), variant_fingerprint("no_ttsa"), code_fingerprint()
    edited = tmp_path / "variants.yaml"
    edited.write_text(resources.variants_file().read_text().replace(
        "switches: {model.ttsa.enabled: false}", "switches: {model.ttsa.enabled: false, model.samb.k: 1}"))
    monkeypatch.setattr(resources, "variants_file", lambda: edited)
    monkeypatch.setattr(variants, "_REGISTRY", {})
    code_fingerprint.cache_clear()
    try:
        after = config_fingerprint(build_config("smoke", variant="no_ttsa")), variant_fingerprint("no_ttsa"), code_fingerprint()
    finally:
        code_fingerprint.cache_clear()
    assert all(a != b for a, b in zip(after, before))  # the entries are part of the code fingerprint too


def test_code_fingerprint_sees_every_source_edit(tmp_path):
    import shutil

    import masf

    fp = code_fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0 and fp == code_fingerprint()
    copy = tmp_path / "masf"
    shutil.copytree(plan.Path(masf.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_fingerprint({"masf": copy})
    assert source_fingerprint({"masf": copy}) == before  # stable
    with open(copy / "trainer.py", "a") as f:
        f.write("\n# an uncommitted edit\n")
    assert source_fingerprint({"masf": copy}) != before


def test_a_checkpoint_of_another_configuration_is_refused(synth_root, tiny, tmp_path):
    """The reproduction: full/seed 0 into a folder, then no_ttsa/seed 5 into the same folder."""
    first = build_config(None, {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0})
    row = run_trial(first, tmp_path)
    assert row["config_fingerprint"] == config_fingerprint(first) and row["code_fingerprint"] == code_fingerprint()
    other = build_config(None, {**tiny(synth_root), "train.epochs": 1, "train.seed": 5, "eval.timing_images": 0}, variant="no_ttsa")
    with pytest.raises(CheckpointMismatch) as err:
        run_trial(other, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "bottle / full / seed 0" in msg and "bottle / no_ttsa / seed 5" in msg
    assert config_fingerprint(first) in msg and config_fingerprint(other) in msg and "--restart" in msg
    # the same configuration resumes; a fresh start is one explicit flag away
    assert run_trial(first, tmp_path)["last/image_auroc"] == row["last/image_auroc"]
    fresh = run_trial(other, tmp_path, resume=False)
    assert fresh["variant"] == "no_ttsa" and fresh["seed"] == 5


def test_an_unfingerprinted_checkpoint_is_refused(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 1})
    torch.manual_seed(0)
    teacher = build_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    trainer = Trainer(cfg, MASF(cfg.model, teacher), train, test, tmp_path, val_set=val)
    state = trainer.state()
    del state["fingerprint"]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointMismatch, match="no configuration fingerprint"):
        trainer.load_checkpoint(tmp_path / "checkpoint.pt")


def test_an_edited_preset_is_a_new_sweep_and_resume_says_what_changed(synth_root, tmp_path):
    preset = tmp_path / "mine.yaml"
    base = yaml.safe_load(preset_path("smoke").read_text())
    preset.write_text(yaml.safe_dump(base))
    args = (synth_root, ["bottle", "carpet"], ["full", "no_ttsa"], [0], str(preset), [])
    trials = plan.plan_trials(*args)
    name, family = plan.sweep_name(trials, str(preset)), plan.sweep_family(*args)
    assert plan.sweep_name(plan.plan_trials(*args), str(preset)) == name  # stable: --resume finds it
    storage = tmp_path / "runs"
    plan.write_plan(storage / name, family, trials)
    assert plan.changed_since(storage, name, family, trials) is None  # resuming the same sweep: nothing to say

    base["model"]["samb"] = {"k": 5}  # edit the preset under the same name
    preset.write_text(yaml.safe_dump(base))
    edited = plan.plan_trials(*args)
    new_name = plan.sweep_name(edited, str(preset))
    assert new_name != name and plan.sweep_family(*args) == family
    note = plan.changed_since(storage, new_name, family, edited)
    assert note.startswith(f"4 of 4 trials changed since sweep {name} (same command)")
    assert "bottle/full/seed0 (model.samb.k 3 -> 5)" in note and f"this is a new sweep ({new_name})" in note


def test_leaderboard_never_merges_another_definition_of_a_variant():
    from test_leaderboard import make_run  # the same hand-made runs

    runs = [make_run("bottle", "patchcore", 0, 0.9, 1)] + [make_run("bottle", "full", s, 0.8, 2 + s) for s in range(3)]
    runs.append({**make_run("bottle", "patchcore", 1, 0.5, 3), "tag:variant_fingerprint": "old-definition"})
    old = {k: v for k, v in make_run("bottle", "patchcore", 2, 0.4, 4).items() if k != "tag:variant_fingerprint"}
    df = lb.runs_frame(runs + [old])
    by = df.groupby("variant").seed.apply(sorted).to_dict()
    assert by == {"full": [0, 1, 2], "patchcore": [0], "patchcore (other definition)": [1, 2]}
    assert "missing" not in set(df.status)  # the relabelled seeds are not counted as missing patchcore seeds


def test_removed_key_says_why():
    with pytest.raises(ConfigError, match="config key 'train.bank_every' was removed: the banks depend only on the frozen teacher"):
        build_config(None, {"train.bank_every": 3})


def test_keys_added_later_keep_the_fingerprints_of_before_at_their_old_behaviour():
    from masf.config import build_config
    from masf.fingerprint import ADDED_KEYS

    # recorded before model.amfd.attention_dtype, eval.test_split, train.feature_cache and the scoring options
    # existed, when the default reading was masked (the validated reading computes something else: new fingerprints)
    before = {("smoke", "full"): "8f79d4fc1274f543", ("cpu", "full"): "cc756ae8e459fa7c", ("paper", "patchcore"): "85b3c91ee13f74eb"}
    for (preset, variant), fingerprint in before.items():
        assert config_fingerprint(build_config(preset, ["model.reading=masked"], variant=variant)) == fingerprint
    assert config_fingerprint(build_config("smoke", variant="full")) != before[("smoke", "full")]
    for key, old in ADDED_KEYS.items():  # another value computes something else: another configuration
        other = {"model.amfd.attention_dtype": "bfloat16", "eval.test_split": "selected", "model.samb.scales": [1, 2],
                 "model.ughf.bank_normalize": "fused", "model.ughf.scoring_weights": "equal", "model.ttsa.aggregate": "min",
                 "model.ttsa.calibration": "views", "data.pseudo": "hard", "data.pseudo_per_normal": 2,
                 "data.val_source": "train", "data.test_set": "test_public", "eval.pro_fpr_limit_strict": 0.1}[key]
        assert other != old
        assert config_fingerprint(build_config("smoke", ["model.reading=masked", f"{key}={other}"])) != before[("smoke", "full")]
