"""What a training gives: its members (the scorings of one trained model) and each member's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from masf.config import Config
from masf.fingerprint import config_fingerprint
from masf.trial.evaluation import Evaluation

# the keys of an evaluation record beyond SELECTION_METRICS that a selection's result row keeps: the per-defect-type
# metrics (defect/<type>/<metric>, masf.metrics.defect_type_metrics) and SegF1's threshold
EXTRA_KEYS = ("defect/", "pixel_normal_threshold")


def selection_extras(records: Mapping[str, Optional[Mapping[str, Any]]]) -> dict[str, float]:
    """``<selection>/<key>`` for every key of each selection's evaluation record that starts with one of
    ``EXTRA_KEYS``, e.g. ``last/defect/scratch/pro``, ``best_on_val/pixel_normal_threshold``; a selection
    whose record is None (no validation split: no best_on_val) gives none."""
    return {f"{sel}/{k}": float(v) for sel, rec in records.items() if rec for k, v in rec.items() if k.startswith(EXTRA_KEYS)}


@dataclass
class TrainOutcome:
    history: list[dict[str, Any]]
    last: dict[str, float]  # test metrics of the final epoch
    best_on_test: dict[str, float]  # empty when the test split was not scored at every epoch (eval.test_split)
    best_epoch: Optional[int]  # the epoch best_on_test chose
    final: Evaluation  # the final epoch on the test split
    skipped_batches: int
    total_batches: int
    train_seconds: float
    bank_stats: dict[str, float] = field(default_factory=dict)
    best_on_val: dict[str, float] = field(default_factory=dict)  # empty without a validation split
    best_val_epoch: Optional[int] = None
    val_last: dict[str, float] = field(default_factory=dict)  # validation metrics of the final epoch
    skipped_steps: int = 0  # optimiser steps skipped for a non-finite gradient (finite loss)
    resumed_code: Optional[str] = None  # code fingerprint of a checkpoint resumed across a code change
    # the final epoch's student maps alone (no TTSA): test metrics, and validation metrics (val/ keys)
    student_only: dict[str, float] = field(default_factory=dict)
    optimizer_steps: int = 0  # steps the optimiser took (batches less skipped batches and skipped steps)
    calibration_shared: bool = False  # the selecting validation normals also calibrated (too few to split)
    # selection -> per-image record of its test scoring (masf/records.py); a selection whose epoch was
    # scored before a resume has none
    test_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    trainable_parameters: int = 0
    # the row's numbers beyond SELECTION_METRICS, keyed as the row keys them (``selection_extras``): last and
    # best_on_val's per-defect-type metrics (<selection>/defect/<type>/<metric>) and SegF1 thresholds
    selection_extras: dict[str, float] = field(default_factory=dict)


@dataclass
class Member:
    """One scoring of the trained model: a trial of its own (config, detector sharing the trained modules).

    A trial that trains alone is one member whose detector is the trained model; a group of variants
    that differ only in how they score (masf/trial/sharing.py) are several members of one training.
    """

    name: Optional[str]
    cfg: Config
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)  # the training records with this member's metrics
    bank_stats: dict[str, float] = field(default_factory=dict)
    test_stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # epoch -> per-image test record (masf/records.py)

    @property
    def fingerprint(self) -> str:
        return config_fingerprint(self.cfg)
