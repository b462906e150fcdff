"""What a result belongs to: fingerprints of a resolved config, a variant's definition and the code.

- ``config_fingerprint``: the resolved config (every key but the operational ones
  of ``OPERATIONAL_KEYS``, which change how fast a trial runs, not what it
  computes) plus the registered definition of its variant, so a variant whose
  switches change is a new configuration even under its old name.
- ``code_fingerprint``: the contents of every source file of the ``masf`` package
  as it is loaded and of the variant entries (ablations/variants.yaml), so it sees
  uncommitted edits and is the same from a checkout and from an installed wheel.

Checkpoints and trial results carry both; a sweep's name is made of its trials'
config fingerprints (see ``masf.runner.plan.sweep_name``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

from masf import resources
from masf.config import Config, flatten

# how fast, where and what is written besides the metrics; never what a trial computes
OPERATIONAL_KEYS = frozenset({
    "preset",  # a name: the preset's content is in the other keys
    "train.threads", "train.device", "data.num_workers", "data.eval_batch_size", "model.samb.device",
    "eval.figures", "eval.heatmap_images", "eval.timing_images",
    "train.wall_limit_s", "train.stall_limit_s", "train.inject_hang_epoch",
    "data.dataset",  # a label of the data (masf/report/paper.py), not of what is computed
    "data.layout",  # how the root is read; the files read follow from data.root
    "train.feature_cache",  # whether the teacher's features are cached: on CPU nothing computed changes
})
# keys added after results were recorded, with the value that computes what was computed before they existed:
# at that value a key is left out, so a config of before keeps its fingerprint (and its checkpoints, sweep names)
ADDED_KEYS = {
    "model.amfd.attention_dtype": "float32",
    "eval.test_split": "every",
    "model.samb.scales": None,
    "model.ughf.bank_normalize": "same",
    "model.ughf.scoring_weights": "learned",
    "model.ttsa.aggregate": "mean",
    "model.ttsa.calibration": "clean",
    "data.pseudo": "standard",
    "data.pseudo_per_normal": 1,
    "data.val_source": "auto",
    "data.test_set": "",
    "eval.pro_fpr_limit_strict": 0.05,
}


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def variant_definition(name: str) -> Any:
    """The registered switches of variant ``name`` (None for an unregistered name)."""
    from masf.config.variants import UnknownVariantError, get_variant

    try:
        v = get_variant(name)
    except UnknownVariantError:
        return None
    return {"switches": v.switches, "baseline": v.baseline}


def variant_fingerprint(name: str) -> str:
    return _digest({"variant": name, "definition": variant_definition(name)}, 12)


def config_fingerprint(cfg: Union[Config, dict[str, Any]]) -> str:
    """16 hex digits of the resolved config (operational keys left out) and its variant's definition."""
    flat = flatten(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    kept = {k: v for k, v in flat.items() if k not in OPERATIONAL_KEYS and not (k in ADDED_KEYS and v == ADDED_KEYS[k])}
    return _digest({"config": kept, "variant_definition": variant_definition(str(flat.get("variant")))})


def source_fingerprint(roots: dict[str, Path], data: Optional[dict[str, bytes]] = None, skip: tuple[str, ...] = ()) -> str:
    """16 hex digits of every .py file under each named root folder (relative path and content) but those
    under a folder of ``skip`` (relative to its root), and of each named ``data`` content."""
    h = hashlib.sha256()
    for name, root in sorted(roots.items()):
        for path in sorted(Path(root).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(tuple(f"{s}/" for s in skip)):
                continue
            h.update(f"{name}/{rel}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    for name, content in sorted((data or {}).items()):
        h.update(f"{name}\0".encode() + content + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The source fingerprint of the ``masf`` package as loaded and of its variant entries (a checkout or a wheel).

    The data packages that a wheel installs inside ``masf`` (masf/resources.py) are left out of the
    sources, so that a checkout and a wheel of the same code agree.
    """
    import masf

    data_packages = tuple(p.removeprefix("masf.") for p in resources.DATA_PACKAGES)
    return source_fingerprint({"masf": Path(masf.__file__).resolve().parent},
                              data={"variants.yaml": resources.variants_file().read_bytes()}, skip=data_packages)


def trial_identity(cfg: Config) -> dict[str, str]:
    """What a checkpoint and a result say they belong to."""
    return {
        "trial": f"{cfg.data.category} / {cfg.variant} / seed {cfg.train.seed}",
        "config": config_fingerprint(cfg),
        "code": code_fingerprint(),
    }
