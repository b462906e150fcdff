"""Readings of the MASF paper: named overlays of the config keys where the paper can be read two ways.

A reading is chosen with ``model.reading`` (``--set model.reading=spec``). It is
applied over the defaults before the preset, the variant and ``--set``, so it
combines with every variant and any single key can still be changed. Every
reading sets every key of ``READING_KEYS``, so two readings differ exactly where
they say. docs/MASF-SPEC.md ("Readings") gives, for each key, what the paper
says, what each reading does and what validation showed.

- ``spec``: MASF-SPEC.md as first pinned down (and masf-bench before readings):
  the loss over every position, attention over every key, no position code,
  raw amplitude error, one unmasked pass at test time, running BatchNorm
  statistics from masked training inputs, raw maps fused, learned
  log-variances, Hermitian TTSA noise.
- ``masked``: the masked-reconstruction reading, chosen on validation data
  (bench/RESULTS.md, section 12).
- ``validated`` (the default): ``masked`` with the scoring chosen on the
  validation splits of two real and two synthetic categories (bench/RESULTS.md,
  section 20): the bank's map at the two coarser scales only, and TTSA's five
  views with the clean image among them, combined by their median.
"""

from __future__ import annotations

from typing import Any

from masf.errors import ConfigError

READING_KEYS = (
    "model.amfd.loss_region",
    "model.amfd.attention_mask",
    "model.amfd.pos_encoding",
    "model.amfd.amplitude_error",
    "model.amfd.test_masking",
    "model.amfd.test_mask_mode",
    "model.amfd.bn_recalibration",
    "model.amfd.norm",
    "model.ughf.log_var_form",
    "model.ughf.normalize",
    "model.ttsa.noise",
    "model.ttsa.include_clean",
    "model.ughf.bank_normalize",
    "model.ughf.scoring_weights",
    "model.samb.scales",
    "model.ttsa.phase_std",
    "model.ttsa.aggregate",
    "model.ttsa.calibration",
)
# the scoring keys as every reading before the validated one had them
_SCORING_BEFORE = {
    "model.ughf.bank_normalize": "same",
    "model.ughf.scoring_weights": "learned",
    "model.samb.scales": None,
    "model.ttsa.phase_std": 0.1,
    "model.ttsa.aggregate": "mean",
    "model.ttsa.calibration": "clean",
}

READINGS: dict[str, dict[str, Any]] = {
    "spec": {
        "model.amfd.loss_region": "all",
        "model.amfd.attention_mask": False,
        "model.amfd.pos_encoding": "none",
        "model.amfd.amplitude_error": "raw",
        "model.amfd.test_masking": False,
        "model.amfd.test_mask_mode": "random",
        "model.amfd.bn_recalibration": False,
        "model.amfd.norm": "batch",
        "model.ughf.log_var_form": "parameter",
        "model.ughf.normalize": "none",
        "model.ttsa.noise": "hermitian",
        "model.ttsa.include_clean": False,
        **_SCORING_BEFORE,
    },
    "masked": {
        "model.amfd.loss_region": "masked",
        "model.amfd.attention_mask": True,
        "model.amfd.pos_encoding": "sincos",
        "model.amfd.amplitude_error": "relative",
        "model.amfd.test_masking": True,
        "model.amfd.test_mask_mode": "complementary",
        "model.amfd.bn_recalibration": True,
        "model.amfd.norm": "batch",
        "model.ughf.log_var_form": "closed_form",
        "model.ughf.normalize": "quantile",
        "model.ttsa.noise": "literal",
        "model.ttsa.include_clean": False,
        **_SCORING_BEFORE,
    },
}

# the masked reading with the scoring chosen on the validation splits of real and synthetic categories
# (bench/RESULTS.md, section 20): the bank enters at the two coarser scales only, and TTSA keeps the clean
# image as one of its five views and takes their median
READINGS["validated"] = {
    **READINGS["masked"],
    "model.samb.scales": [-2, -1],
    "model.ttsa.include_clean": True,
    "model.ttsa.aggregate": "median",
}

DEFAULT_READING = "validated"


class UnknownReadingError(ConfigError, LookupError):
    """A reading name that is not defined."""


def reading_switches(name: str) -> dict[str, Any]:
    """The dotted keys and values of reading ``name``."""
    if name not in READINGS:
        raise UnknownReadingError(f"model.reading: unknown reading {name!r} (known: {', '.join(READINGS)})")
    return dict(READINGS[name])


def reading_of(flat: dict[str, Any]) -> str:
    """The reading whose every key the flat config ``flat`` has, else ``"custom"`` (the name it was built from
    with some key changed)."""
    name = flat.get("model.reading")
    if name in READINGS and all(flat.get(k) == v for k, v in READINGS[name].items()):
        return name
    return "custom"
