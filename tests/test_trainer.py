"""The trainer and one trial on synthetic data: loss falls, metrics in range, NaN batches
skipped and counted, a killed trial resumed gives the same final metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from masf.config import build_config
from masf.errors import TrainingError
from masf.method.model import MASF
from masf.metrics import SELECTION_METRICS
from masf.method.teacher import build_teacher
from masf.trial.trainer import CHECKPOINT, Trainer, lr_factor
from masf.trial.run import build_datasets, run_trial


class PoisonedMASF(MASF):
    """MASF whose training loss turns NaN on the given calls (0-based): an injected non-finite batch."""

    def __init__(self, *args, poisoned: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.poisoned, self.calls = poisoned, 0

    def training_loss(self, x, generator=None):
        loss, parts = super().training_loss(x, generator)
        if self.calls in self.poisoned:
            loss = loss * float("nan")
        self.calls += 1
        return loss, parts


def _trainer(cfg, out_dir: Path, poisoned: set[int] | None = None) -> Trainer:
    teacher = build_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, teacher.mean, teacher.std)
    torch.manual_seed(cfg.train.seed)
    if poisoned is None:
        model = MASF(cfg.model, teacher, seed=cfg.train.seed)
    else:
        model = PoisonedMASF(cfg.model, teacher, seed=cfg.train.seed, poisoned=poisoned)
    return Trainer(cfg, model, train, test, out_dir, val_set=val)


def test_lr_schedule_warmup_then_cosine():
    cfg = build_config(None, {"train.warmup_epochs": 2, "train.restart_epochs": 4, "train.lr": 1e-3, "train.eta_min": 0.0})
    f = [lr_factor(s, 10, cfg) for s in range(61)]
    assert f[0] == pytest.approx(1 / 20) and f[19] == pytest.approx(1.0)
    assert np.all(np.diff(f[:20]) > 0)  # linear warm-up over 2 epochs of 10 steps
    assert f[20] == pytest.approx(1.0) and f[40] == pytest.approx(0.5)  # half-way down the cosine
    assert np.all(np.diff(f[20:60]) < 0) and f[59] < 0.01
    assert f[60] == pytest.approx(1.0)  # warm restart after T_0 = 4 epochs


def test_loss_falls_and_metrics_in_range(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 6, "train.warmup_epochs": 1, "train.lr": 2e-3, "eval.every": 3})
    outcome = _trainer(cfg, tmp_path).fit()
    losses = [h["loss"] for h in outcome.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    for metrics in (outcome.last, outcome.best_on_test):
        assert set(metrics) == set(SELECTION_METRICS)
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    evaluated = [h["epoch"] for h in outcome.history if "composite" in h]
    assert evaluated == [3, 6] and outcome.best_epoch in evaluated and outcome.best_val_epoch in evaluated
    assert set(outcome.best_on_val) == set(SELECTION_METRICS) and all(0.0 <= v <= 1.0 for v in outcome.best_on_val.values())
    assert all(0.0 <= h["val/composite"] <= 1.0 for h in outcome.history if "composite" in h)
    # each selection keeps the per-image record of its epoch's test scoring (masf/records.py); it recomputes its metrics
    from masf.records import metrics_from_statistics

    assert set(outcome.test_stats) == {"last", "best_on_val", "best_on_test"}
    again = metrics_from_statistics(outcome.test_stats["last"])
    assert again["image_auroc"][0] == pytest.approx(outcome.last["image_auroc"], abs=1e-9)
    assert outcome.trainable_parameters > 0
    # 8 train/good images: 2 held out for validation (each also with a pseudo-anomaly), 6 to train on
    assert outcome.skipped_batches == 0 and outcome.total_batches == 12


def test_nan_batch_is_skipped_and_counted(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "data.batch_size": 4, "train.epochs": 2})
    outcome = _trainer(cfg, tmp_path / "some", poisoned={1, 2}).fit()  # 2 batches per epoch
    assert [h["skipped_batches"] for h in outcome.history] == [1, 1]
    assert outcome.skipped_batches == 2 and outcome.total_batches == 4
    assert all(np.isfinite(h["loss"]) for h in outcome.history)
    assert all(0.0 <= v <= 1.0 for v in outcome.last.values())
    with pytest.raises(TrainingError, match="every one of the 4 training batches"):
        _trainer(cfg, tmp_path / "all", poisoned={0, 1, 2, 3}).fit()


def test_run_trial_writes_row_config_and_figures(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "eval.figures": True, "eval.heatmap_images": 3})
    seen = []
    row = run_trial(cfg, tmp_path, on_epoch=seen.append)
    assert [e["epoch"] for e in seen] == [1, 2] and seen[-1]["final"] is True
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(row))
    for key in SELECTION_METRICS:
        assert 0.0 <= row[f"last/{key}"] <= 1.0 and 0.0 <= row[f"best_on_test/{key}"] <= 1.0
    assert row["category"] == "bottle" and row["variant"] == "full" and row["device"] == "cpu"
    assert row["infer_ms_per_image"] > 0 and row["infer_ms_per_image_ttsa"] > 0 and row["best_epoch"] in (1, 2)
    assert all(not isinstance(v, (list, dict)) for v in row.values())  # one flat row
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / CHECKPOINT).is_file()
    for name in ("heatmaps", "roc", "score_histogram", "training_curves"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000


KILLABLE = textwrap.dedent(
    """
    import json, sys, time
    from masf.config import load_config_file
    from masf.trial import run_trial
    cfg = load_config_file(sys.argv[1])
    def slow(record):
        print("EPOCH", record["epoch"], flush=True)
        if record["epoch"] == 2:
            time.sleep(60)  # killed here, after epoch 2's checkpoint was written
    run_trial(cfg, sys.argv[2], on_epoch=slow if len(sys.argv) > 3 else None)
    """
)


def test_killed_trial_resumes_to_the_same_metrics(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 4, "eval.every": 2})
    cfg.save(tmp_path / "cfg.yaml")
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the uninterrupted run and the resumed one in the same environment (the BLAS and FAISS thread
    # settings of a process can move the last bits of a bank distance)
    subprocess.run([sys.executable, str(script), str(tmp_path / "cfg.yaml"), str(tmp_path / "straight")], env=env, check=True,
                   capture_output=True)
    straight = json.loads((tmp_path / "straight" / "result.json").read_text())

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cfg.yaml"), str(out), "slow"],
                            stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.strip() == "EPOCH 2" or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2 and not (out / "result.json").exists()

    subprocess.run([sys.executable, str(script), str(tmp_path / "cfg.yaml"), str(out)], env=env, check=True, capture_output=True)
    resumed = json.loads((out / "result.json").read_text())
    for key in SELECTION_METRICS:
        assert resumed[f"last/{key}"] == pytest.approx(straight[f"last/{key}"], abs=1e-6), key
        assert resumed[f"best_on_test/{key}"] == pytest.approx(straight[f"best_on_test/{key}"], abs=1e-6), key
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_patchcore_trains_nothing_and_scores(synth_root, tiny, tmp_path):
    cfg = build_config(None, {**tiny(synth_root), "eval.timing_images": 0}, variant="patchcore")
    row = run_trial(cfg, tmp_path)
    assert row["total_batches"] == 0 and row["best_epoch"] == 0
    assert 0.0 <= row["last/image_auroc"] <= 1.0
    assert row["bank_seconds"] > 0 and row["bank/prototypes"] > 0 and row["method"] == "patchcore"
    assert row["infer_ms_per_image"] is None and row["infer_ms_per_image_ttsa"] is None  # timing switched off


def test_non_finite_gradient_with_finite_loss_skips_the_step_and_counts_it(synth_root, tiny, tmp_path):
    """The paper's float16 failure on CPU: the loss is finite, a gradient is not; no scaler runs here."""
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 1})
    trainer = _trainer(cfg, tmp_path)
    params = trainer.model.trainable_parameters()
    victim = params[0]
    victim.register_hook(lambda g: torch.full_like(g, float("inf")))
    before = [p.detach().clone() for p in params]
    record = trainer.train_epoch()
    assert record["batches"] == 2 and record["skipped_steps"] == 2 and record["skipped_batches"] == 0
    assert np.isfinite(record["loss"])
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # no parameter moved
    assert not trainer.scaler.is_enabled()
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient \(0 losses, 2 gradients\)"):
        trainer.fit(resume=False)
