"""The ablation-variant registry.

A variant is a name plus the config switches it turns off; the entries live in
``ablations/variants.py`` (one line each). The CLI, the orchestrator and the
tests all read this registry.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from masf.errors import MasfError

_REGISTRY: dict[str, "Variant"] = {}


class UnknownVariantError(MasfError, LookupError):
    """A variant name that is not registered."""


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


def register_variant(name: str, switches: dict[str, Any], description: str, baseline: bool = False) -> Variant:
    if name in _REGISTRY:
        warnings.warn(f"variant '{name}' registered twice; the later entry wins", stacklevel=2)
    variant = Variant(name=name, switches=dict(switches), description=description, baseline=baseline)
    _REGISTRY[name] = variant
    return variant


def _load_entries() -> None:
    import ablations.variants  # noqa: F401  (registers on import)


def list_variants(include_baselines: bool = True) -> list[str]:
    _load_entries()
    return [n for n, v in _REGISTRY.items() if include_baselines or not v.baseline]


def get_variant(name: str) -> Variant:
    _load_entries()
    if name not in _REGISTRY:
        raise UnknownVariantError(f"unknown variant '{name}' (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]
