from pathlib import Path

import pytest
import yaml

from masf.errors import MasfError
from masf.config import Config, ConfigError, build_config, list_presets, load_config_file, parse_override


def test_defaults_are_the_spec_numbers():
    cfg = Config()
    assert cfg.model.sdm.low_ratio == 0.3
    assert (cfg.model.amfd.spatial_mask_ratio, cfg.model.amfd.freq_mask_ratio) == (0.35, 0.25)
    assert (cfg.model.amfd.heads, cfg.model.amfd.attn_dim) == (4, 256)
    assert (cfg.model.samb.coreset_ratio, cfg.model.samb.coreset_max, cfg.model.samb.k) == (0.1, 3000, 3)
    assert (cfg.model.ughf.cos_weight, cfg.model.ughf.bank_weight, cfg.model.ughf.blur_sigma) == (0.6, 0.4, 4.0)
    assert (cfg.model.ttsa.views, cfg.model.ttsa.phase_std) == (5, 0.1)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.warmup_epochs, cfg.train.restart_epochs) == (2e-4, 1e-5, 5, 15)
    assert (cfg.train.epochs, cfg.data.batch_size, cfg.data.image_size) == (15, 8, 256)
    assert cfg.eval.composite_weights == [0.5, 0.3, 0.2]


@pytest.mark.parametrize("preset", ["paper", "cpu", "smoke"])
def test_presets_load(preset):
    cfg = build_config(preset)
    assert cfg.preset == preset
    assert preset in list_presets()


def test_paper_preset():
    cfg = build_config("paper")
    assert cfg.model.teacher.name == "wide_resnet50_2" and cfg.model.teacher.weights == "timm"
    assert (cfg.train.epochs, cfg.data.batch_size, cfg.data.image_size) == (15, 8, 256)


def test_overrides_and_types():
    cfg = build_config("smoke", ["train.epochs=7", "model.samb.k=5", "train.lr=1e-3", "model.teacher.out_indices=[2,3]",
                                 "data.root=/x/y", "model.ttsa.enabled=false"])
    assert cfg.train.epochs == 7 and cfg.model.samb.k == 5 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.teacher.out_indices == [2, 3] and cfg.data.root == "/x/y" and cfg.model.ttsa.enabled is False
    # ints are accepted where floats are expected
    assert build_config(None, {"train.lr": 1}).train.lr == 1.0


@pytest.mark.parametrize(
    "override, culprit",
    [
        ("train.epoch=3", "train.epoch"),
        ("model.sdm.nope=1", "model.sdm.nope"),
        ("train.epochs=three", "train.epochs"),
        ("train.epochs=1.5", "train.epochs"),
        ("model.sdm.enabled=3", "model.sdm.enabled"),
        ("model.teacher.weights=internet", "model.teacher.weights"),
        ("model.teacher.out_indices=[1, x]", "model.teacher.out_indices[1]"),
        ("model.sdm=1", "model.sdm"),
        ("model.sdm.low_ratio=1.5", "model.sdm.low_ratio"),
    ],
)
def test_bad_overrides_name_the_key(override, culprit):
    with pytest.raises(ConfigError, match=rf"'?{culprit.replace('[', '.').replace(']', '.')}"):
        build_config("smoke", [override])


def test_override_syntax():
    assert parse_override("a.b=1") == ("a.b", 1)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("a.b")


def test_unknown_preset_and_variant():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        build_config("nope")
    with pytest.raises(MasfError, match="unknown variant 'nope'"):
        build_config("smoke", variant="nope")


def test_bad_preset_file_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochz"):
        build_config(str(bad))
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(str(unsafe))


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = build_config("cpu", ["train.epochs=3"], variant="no_sdm")
    cfg.save(tmp_path / "config.yaml")
    again = load_config_file(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["variant"] == "no_sdm"


def test_variant_switches_come_before_user_overrides():
    cfg = build_config("smoke", ["model.patchcore.local_avg=5"], variant="patchcore")
    assert cfg.model.patchcore.local_avg == 5 and cfg.model.method == "patchcore"
