"""``build_config``: defaults <- reading overlay <- preset YAML <- variant switches <- ``--set`` overrides."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Optional, Union

from masf import resources
from masf.config.readings import reading_switches
from masf.config.schema import Config, ConfigError, coerce, overlay, nest, parse_override, read_yaml, validate
from masf.config.variants import get_variant

if typing.TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def preset_path(preset: str) -> Union[Path, Traversable]:
    """A preset by name (bench/presets/NAME.yaml) or a path to a YAML file."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file not found: {path}")
        return path
    known = resources.presets()
    if preset not in known:
        raise ConfigError(f"unknown preset '{preset}' (known: {', '.join(known)}, or a path to a YAML file)")
    return known[preset]


def list_presets() -> list[str]:
    return list(resources.presets())


def build_config(
    preset: Optional[str] = None,
    overrides: Union[dict[str, Any], list[str], None] = None,
    variant: Optional[str] = None,
) -> Config:
    """Defaults <- reading overlay <- preset YAML <- variant switches <- overrides.

    ``overrides`` is either a dotted-key dict or a list of ``a.b=c`` strings.
    The variant's switches (ablations/variants.yaml) go before the user's overrides so
    that a user may still change any number of a variant.
    """
    cfg = Config()
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    overrides = dict(overrides or {})
    data = read_yaml(preset_path(preset)) if preset else {}
    # the reading overlays the defaults first, so that the preset, the variant and --set still win
    model_data = data.get("model") if isinstance(data.get("model"), dict) else {}
    reading = overrides.get("model.reading", model_data.get("reading", cfg.model.reading))
    cfg.model.reading = coerce(reading, str, "model.reading")
    overlay(cfg, nest(reading_switches(cfg.model.reading)), "")
    if preset:
        path = preset_path(preset)
        try:
            overlay(cfg, data, "")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        cfg.preset = data.get("preset", Path(path.name).stem)
    if "variant" in overrides and variant is None:
        variant = overrides.pop("variant")
    if variant is not None:
        cfg.variant = coerce(variant, str, "variant")
    overlay(cfg, nest(get_variant(cfg.variant).switches), "")
    if overrides:
        overlay(cfg, nest(overrides), "")
    validate(cfg)
    return cfg
