"""Which trials can share one training: the split of config keys into training and scoring.

A key in :data:`SCORING_KEYS` changes only how a trained MASF model is scored,
never what is trained: TTSA, the banks (built from the frozen teacher, never
seen by the loss), the student's presence at scoring time (``bank_only``) and
the fusion of the maps. Every other key (operational keys and the labels
``variant`` and ``model.reading`` aside) is the trial's *training part*.

Trials with the same training part (seed included) form a group: one training,
each member scored from it with its own config, its own metrics per evaluated
epoch, result row and MLflow run. ``no_ttsa``, ``no_samb`` and ``bank_only``
join ``full``; ``no_ughf`` does not (``model.ughf.learned`` changes the loss).

Kept in the training part although they shape scoring alone: the student's
test-time regime (``model.amfd.test_masking``, ``test_mask_mode``,
``test_mask_draws``, ``bn_recalibration``). Members share one student, whose
BatchNorm statistics the scoring regime recalibrates in place, so members of
one group agree on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

from masf.config import Config, flatten

SCORING_KEYS = (
    "model.ttsa.",  # every TTSA key
    "model.samb.",  # every bank key
    "model.amfd.enabled",  # False: the student is left out of the score (bank_only)
    "model.ughf.cos_weight", "model.ughf.bank_weight", "model.ughf.blur_sigma", "model.ughf.normalize", "model.ughf.quantiles",
)
LABEL_KEYS = frozenset({"variant", "model.reading"})  # names; what they stand for is in the other keys


def scoring_only(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in SCORING_KEYS)


def training_part(cfg: Union[Config, dict[str, Any]]) -> dict[str, Any]:
    """The keys that shape what is trained (operational keys, labels and scoring keys left out)."""
    from masf.fingerprint import OPERATIONAL_KEYS

    flat = flatten(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    return {k: v for k, v in flat.items() if k not in OPERATIONAL_KEYS and k not in LABEL_KEYS and not scoring_only(k)}


def training_fingerprint(cfg: Union[Config, dict[str, Any]]) -> str:
    """16 hex digits of the training part: trials with equal ones share a training."""
    blob = json.dumps(training_part(cfg), sort_keys=True, default=str)
    return "t" + hashlib.sha256(blob.encode()).hexdigest()[:15]


def has_student(cfg: Union[Config, dict[str, Any]]) -> bool:
    flat = flatten(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    return flat["model.method"] == "masf" and bool(flat["model.amfd.enabled"])


@dataclass(frozen=True)
class Group:
    """Trials (keys, in plan order) that share one training; ``lead`` is the one whose config trains."""

    key: str
    lead: str
    members: tuple[str, ...]
    training_fingerprint: str


def group_key(category: str, lead_variant: str, size: int, seed: int) -> str:
    return f"{category}/{lead_variant}+{size - 1}/seed{seed}"


def plan_groups(trials: Sequence[Any]) -> list[Group]:
    """Groups of two or more MASF trials (objects with key, category, variant, seed, config) with one training
    part; the lead is the first member with a student (else the first). Other trials are not grouped."""
    by_training: dict[str, list[Any]] = {}
    for t in trials:
        if flatten(t.config)["model.method"] == "masf":
            by_training.setdefault(training_fingerprint(t.config), []).append(t)
    groups = []
    for fp, members in by_training.items():
        if len(members) < 2:
            continue
        lead = next((t for t in members if has_student(t.config)), members[0])
        groups.append(Group(group_key(lead.category, lead.variant, len(members), lead.seed), lead.key,
                            tuple(t.key for t in members), fp))
    return groups


def member_dir(out_dir: Union[str, Path], key: str) -> Path:
    """Where a group member's result, config, history and figures are written in the group's folder."""
    return Path(out_dir) / "members" / key.replace("/", "__")
