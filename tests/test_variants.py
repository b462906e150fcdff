"""The ablation registry: every variant switches off exactly its part (tests loop over the registry);
its entries are data (ablations/variants.yaml), and a malformed entry is one line naming the file and key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masf import resources
from masf.config import variants
from masf.config import Config, build_config
from masf.method.model import MASF
from masf.method.teacher import build_teacher
from masf.config.variants import VariantError, get_variant, list_variants, read_variants

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


def use_variants_file(monkeypatch: pytest.MonkeyPatch, path) -> None:
    """Read the registry from ``path`` instead of ablations/variants.yaml for one test."""
    monkeypatch.setattr(resources, "variants_file", lambda: path)
    monkeypatch.setattr(variants, "_REGISTRY", {})


def test_adding_a_variant_is_one_entry(tmp_path, monkeypatch):
    shipped = list_variants()
    mine = tmp_path / "variants.yaml"
    mine.write_text(resources.variants_file().read_text()
                    + "no_anchor:\n  description: banks without spectral anchors\n  switches: {model.samb.spectral_anchor: false}\n")
    use_variants_file(monkeypatch, mine)
    assert list_variants() == [*shipped, "no_anchor"] and list(read_variants(mine)) == list_variants()
    assert build_config(None, TINY, variant="no_anchor").model.samb.spectral_anchor is False
    assert not get_variant("no_anchor").baseline


BAD_ENTRIES = [
    ("broken:\n  description: misspelled switch\n  switches: {model.sdm.enabld: false}\n", "variant 'broken': switches: unknown config key 'model.sdm.enabld'"),
    ("broken:\n  description: wrong type\n  switches: {model.samb.k: three}\n", "variant 'broken': switches: model.samb.k: expected int"),
    ("broken:\n  description: typo\n  switchs: {model.sdm.enabled: false}\n", "variant 'broken': unknown key 'switchs'"),
    ("broken:\n  switches: {model.sdm.enabled: false}\n", "variant 'broken': 'description' must be a line of text"),
    ("broken:\n  description: x\n  baseline: maybe\n", "variant 'broken': 'baseline' must be true or false"),
    ("broken: [model.sdm.enabled]\n", "variant 'broken': expected a mapping"),
    ("full:\n  description: again\n", "'full' given twice (line 14)"),
    ("bad name:\n  description: x\n", "variant 'bad name': a name is letters"),
]


@pytest.mark.parametrize("extra, culprit", BAD_ENTRIES)
def test_a_bad_entry_is_one_line_naming_file_and_key(tmp_path, monkeypatch, extra, culprit):
    mine = tmp_path / "variants.yaml"
    mine.write_text("full:\n  description: MASF\n" + "\n" * 11 + extra)
    use_variants_file(monkeypatch, mine)
    with pytest.raises(VariantError) as caught:
        list_variants()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{mine}: ") and culprit in message, message
