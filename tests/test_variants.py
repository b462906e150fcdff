"""The ablation registry: every variant switches off exactly its part (tests loop over the registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masf.config import Config, build_config
from masf.method.model import MASF
from masf.teacher import build_teacher
from masf.variants import get_variant, list_variants, register_variant

TINY = {"model.teacher.name": "resnet18", "model.teacher.weights": "none", "model.ttsa.views": 2}


def _parts(cfg: Config) -> dict[str, bool]:
    """What a model built from ``cfg`` really contains or does."""
    torch.manual_seed(0)
    m = MASF(cfg.model, build_teacher(cfg.model.teacher))
    return {
        "sdm": all(not isinstance(s, nn.Identity) for s in m.sdm),
        "student": m.students is not None,
        "freq_view": m.students is not None and all(s.freq_view for s in m.students),
        "bank": m.banks is not None,
        "anchor": m.banks is not None and all(b.anchor is not None for b in m.banks),
        # learned weights: a parameter (the spec) or the closed form that tracks the losses (the default reading)
        "learned_fusion": m.ughf.learned and (m.ughf.form == "closed_form" or any(p is m.ughf.log_vars for p in m.parameters())),
        "ttsa": cfg.model.ttsa.enabled,
    }


SWITCH_TO_PART = {
    "model.sdm.enabled": "sdm",
    "model.amfd.enabled": "student",
    "model.amfd.freq_view": "freq_view",
    "model.samb.enabled": "bank",
    "model.samb.spectral_anchor": "anchor",
    "model.ughf.learned": "learned_fusion",
    "model.ttsa.enabled": "ttsa",
}


@pytest.mark.parametrize("name", list_variants())
def test_variant_changes_only_its_switches(name):
    full = build_config(None, TINY).flat()
    cfg = build_config(None, TINY, variant=name)
    changed = {k: v for k, v in cfg.flat().items() if full[k] != v and k != "variant"}
    assert changed == get_variant(name).switches


MASF_VARIANTS = [v for v in list_variants() if "model.method" not in get_variant(v).switches]


@pytest.mark.parametrize("name", MASF_VARIANTS)
def test_variant_model_lacks_exactly_its_parts(name):
    base = _parts(build_config(None, TINY))
    assert all(base.values())  # full has every part
    parts = _parts(build_config(None, TINY, variant=name))
    off = {SWITCH_TO_PART[k] for k, v in get_variant(name).switches.items() if k in SWITCH_TO_PART and v is False}
    if "student" in off:
        off.add("freq_view")  # no student, no views
    if "bank" in off:
        off.add("anchor")
    assert {p for p, present in parts.items() if not present} == off


def test_expected_registry():
    assert list_variants() == ["full", "no_sdm", "no_amfd", "no_samb", "no_ughf", "no_ttsa", "spatial_only",
                               "bank_only", "patchcore", "padim"]
    assert [v for v in list_variants(include_baselines=False)] == list_variants()[:-3]
    for name in ("bank_only", "patchcore", "padim"):
        assert get_variant(name).baseline and not get_variant(name).trains
    assert all(get_variant(v).trains for v in list_variants(include_baselines=False))


@pytest.mark.parametrize("name,cls", [("patchcore", "PatchCore"), ("padim", "PaDiM"), ("bank_only", "MASF")])
def test_baselines_build_their_own_detector(name, cls):
    from masf.method.model import build_detector

    cfg = build_config(None, TINY, variant=name)
    det = build_detector(cfg.model, build_teacher(cfg.model.teacher))
    assert type(det).__name__ == cls and not det.trains and det.trainable_parameters() == []
    if name == "bank_only":  # MASF's own banks and TTSA, no student
        assert det.students is None and det.banks is not None and cfg.model.ttsa.enabled


def test_registering_a_variant_is_one_entry():
    with pytest.warns(UserWarning, match="registered twice"):
        register_variant("no_ttsa", {"model.ttsa.enabled": False}, "again")
    cfg = build_config(None, TINY, variant="no_ttsa")
    assert cfg.model.ttsa.enabled is False


def test_unknown_switch_key_is_a_config_error():
    from masf.config import ConfigError

    register_variant("broken_entry", {"model.sdm.enabld": False}, "misspelled switch")
    try:
        with pytest.raises(ConfigError, match="model.sdm.enabld"):
            build_config(None, TINY, variant="broken_entry")
    finally:
        from masf import variants

        variants._REGISTRY.pop("broken_entry")
