"""The ablation-variant registry.

A variant is a name plus the config switches it turns off; the entries are data, one each
in ``ablations/variants.yaml`` (installed as ``masf.ablations``, see masf/resources.py).
The CLI, the orchestrator and the tests all read this registry; a malformed entry stops
the first read with one line naming the file, the variant and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import yaml

from masf import resources
from masf.config.schema import config_from_dict, nest
from masf.errors import ConfigError, MasfError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable
    from pathlib import Path

ENTRY_KEYS = ("description", "switches", "baseline")
_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a variant name is part of trial keys and folder names
_REGISTRY: dict[str, "Variant"] = {}


class UnknownVariantError(MasfError, LookupError):
    """A variant name that is not registered."""


class VariantError(MasfError, ValueError):
    """A malformed entry of the variants file; the message names the file, the variant and the key."""


@dataclass(frozen=True)
class Variant:
    name: str
    switches: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    description: str = ""
    baseline: bool = False  # not a MASF ablation but a reference method

    @property
    def trains(self) -> bool:
        """Whether the variant has a student to train (the baselines and bank_only do not)."""
        return self.switches.get("model.method", "masf") == "masf" and bool(self.switches.get("model.amfd.enabled", True))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not the later value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"'{key}' given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _entry(file: str, name: Any, entry: Any) -> Variant:
    where = f"{file}: variant '{name}'"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise VariantError(f"{where}: a name is letters, digits, '_' or '-'")
    if not isinstance(entry, dict):
        raise VariantError(f"{where}: expected a mapping of {', '.join(ENTRY_KEYS)}, got {entry!r}")
    unknown = [k for k in entry if k not in ENTRY_KEYS]
    if unknown:
        raise VariantError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(ENTRY_KEYS)})")
    description, switches, baseline = entry.get("description"), entry.get("switches"), entry.get("baseline", False)
    switches = {} if switches is None else switches
    if not isinstance(description, str) or not description.strip():
        raise VariantError(f"{where}: 'description' must be a line of text")
    if not isinstance(switches, dict) or not all(isinstance(k, str) for k in switches):
        raise VariantError(f"{where}: 'switches' must map dotted config keys to values, got {switches!r}")
    if not isinstance(baseline, bool):
        raise VariantError(f"{where}: 'baseline' must be true or false, got {baseline!r}")
    try:  # every switch a config key with a value of its type
        config_from_dict(nest(switches))
    except ConfigError as exc:
        raise VariantError(f"{where}: switches: {exc}") from None
    return Variant(name=name, switches=dict(switches), description=description.strip(), baseline=baseline)


def read_variants(source: Union[Path, Traversable]) -> dict[str, Variant]:
    """Every entry of a variants file (NAME: {description, switches, baseline}), in file order."""
    try:
        loader = _UniqueKeyLoader(source.read_text())  # a SafeLoader: no tags beyond plain YAML
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise VariantError(f"{source}: {getattr(exc, 'problem', None) or 'not valid YAML'}{at}") from None
    if not isinstance(data, dict) or not data:
        raise VariantError(f"{source}: expected a mapping of variant names to entries")
    return {name: _entry(str(source), name, entry) for name, entry in data.items()}


def _registry() -> dict[str, Variant]:
    if not _REGISTRY:
        _REGISTRY.update(read_variants(resources.variants_file()))
    return _REGISTRY


def list_variants(include_baselines: bool = True) -> list[str]:
    return [n for n, v in _registry().items() if include_baselines or not v.baseline]


def get_variant(name: str) -> Variant:
    registry = _registry()
    if name not in registry:
        raise UnknownVariantError(f"unknown variant '{name}' (known: {', '.join(registry)})")
    return registry[name]
