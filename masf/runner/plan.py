"""What a sweep runs: trials (category x variant x seed), its data root, its name.

Pure planning, no Ray and no MLflow. Everything that can be checked before a
trial starts is checked here and raises one line naming the culprit: variant
names, category names and their folders, the config (preset, ``--set`` keys and
types), the backbone name and the availability of its weights. Problems inside
a category's files (a corrupt image, a bad mask) are found when its trial
starts, and fail that trial alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from masf import resources
from masf.config import Config, build_config, flatten, read_yaml
from masf.data import MVTEC_CATEGORIES
from masf.data.folders import category_dir, check_category_name, list_categories
from masf.errors import DataError, MasfError
from masf.layout import cache_dir
from masf.fingerprint import config_fingerprint
from masf.config.variants import get_variant, list_variants

SYNTH_VERSION = 1  # bump when the generator's output changes
SYNTH_ARGS = {"seed": 0, "size": 128, "n_train": 20, "n_test": 20}


@dataclass(frozen=True)
class TrialSpec:
    key: str  # "category/variant/seed"; stable across retries and --resume
    category: str
    variant: str
    seed: int
    config: dict[str, Any] = field(hash=False, compare=False)  # the resolved config (Config.to_dict())

    @property
    def fingerprint(self) -> str:
        return config_fingerprint(self.config)

    @property
    def dirname(self) -> str:
        return self.key.replace("/", "__")


def trial_key(category: str, variant: str, seed: int) -> str:
    return f"{category}/{variant}/seed{seed}"


def synthetic_root() -> Path:
    """The synthetic 15-category dataset, generated once into the cache folder (atomically)."""
    from masf.data.synth import generate_dataset

    tag = "-".join(f"{k}{v}" for k, v in SYNTH_ARGS.items())
    root = cache_dir() / f"synthetic-v{SYNTH_VERSION}-{tag}"
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    try:
        generate_dataset(tmp, categories=list(MVTEC_CATEGORIES), **SYNTH_ARGS)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def resolve_data_root(data_root: Optional[str]) -> tuple[Path, bool]:
    """--data-root, else $MVTEC_AD_ROOT, else the synthetic cache. Returns (absolute root, synthetic?)."""
    given = data_root or os.environ.get("MVTEC_AD_ROOT")
    if given:
        root = Path(given).expanduser().resolve()
        if not root.is_dir():
            source = "--data-root" if data_root else "MVTEC_AD_ROOT"
            raise DataError(f"{source}: {root} is not a folder")
        return root, False
    return synthetic_root(), True


def resolve_categories(root: Path, categories: Optional[Sequence[str]], all_categories: bool) -> list[str]:
    if all_categories:
        found = list_categories(root)
        if not found:
            raise DataError(f"no categories under {root} (expected ROOT/CATEGORY/train/good, ...)")
        return found
    if not categories:
        raise MasfError("name the categories: --categories a,b or --all-categories")
    for name in categories:
        check_category_name(name)
        category_dir(root, name)  # unknown category -> one line listing the known ones
    return list(dict.fromkeys(categories))


def resolve_variants(variants: Optional[Sequence[str]], ablations: bool) -> list[str]:
    if ablations:
        return list_variants(include_baselines=True)
    names = list(dict.fromkeys(variants or ["full"]))
    for name in names:
        get_variant(name)  # unknown -> one line listing the known ones
    return names


def check_teacher(cfg: Config) -> bool:
    """An unknown backbone or missing weights fail before any trial: the teacher is built once in the
    driver, unless it built before on this machine from the same weights (masf/method/teacher_seen.py), which
    spares the driver torch, timm and the weights. Returns whether it was built."""
    from masf.method.teacher_seen import seen

    if seen(cfg.model.teacher):
        return False
    from masf.method.teacher import build_teacher

    build_teacher(cfg.model.teacher)
    return True


def plan_trials(
    root: Path,
    categories: Sequence[str],
    variants: Sequence[str],
    seeds: Sequence[int],
    preset: str,
    overrides: Sequence[str] = (),
) -> list[TrialSpec]:
    trials = []
    for category in categories:
        for variant in variants:
            for seed in seeds:
                cfg = build_config(preset, [*overrides, f"data.root={root}", f"data.category={category}", f"train.seed={seed}"], variant=variant)
                trials.append(TrialSpec(trial_key(category, variant, seed), category, variant, seed, cfg.to_dict()))
    return trials


PLAN_FILE = "plan.json"  # in the sweep's storage folder: what each trial of the sweep is


def sweep_family(root: Path, categories: Sequence[str], variants: Sequence[str], seeds: Sequence[int], preset: str, overrides: Sequence[str]) -> str:
    """A hash of the command's arguments: sweeps of one command, before and after an edit, share it."""
    blob = json.dumps([str(root), sorted(categories), sorted(variants), sorted(seeds), preset, sorted(overrides)])
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def sweep_name(trials: Sequence[TrialSpec], preset: str) -> str:
    """The sweep's identity: the content of its resolved trial configs (variant definitions included).

    The same trials give the same name, which is what --resume finds; an edited preset, override,
    variant entry or default gives another name, so old results are never taken for new ones.
    """
    blob = json.dumps(sorted((t.key, t.fingerprint) for t in trials))
    return f"{Path(preset).stem}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def write_plan(folder: Path, family: str, trials: Sequence[TrialSpec]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"family": family, "trials": {t.key: {"fingerprint": t.fingerprint, "config": t.config} for t in trials}}
    tmp = folder / (PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, folder / PLAN_FILE)


def _config_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    a, b = flatten(old), flatten(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    parts = [f"{k} {a.get(k, '(none)')!r} -> {b.get(k, '(none)')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"{len(keys) - limit} more keys")
    return ", ".join(parts) or "the variant's definition"


def changed_since(storage: Path, name: str, family: str, trials: Sequence[TrialSpec]) -> Optional[str]:
    """When sweep ``name`` is new but an earlier sweep of the same command exists: a line saying
    which trials changed and how (None when there is nothing to say)."""
    if (storage / name / PLAN_FILE).exists():
        return None
    earlier = []
    for path in storage.glob(f"*/{PLAN_FILE}"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("family") == family and path.parent.name != name:
            earlier.append((path.stat().st_mtime, path.parent.name, data.get("trials", {})))
    if not earlier:
        return None
    _, old_name, old = max(earlier)
    new = {t.key: t for t in trials}
    changed = [f"{k} ({_config_diff(old[k]['config'], new[k].config)})" for k in sorted(new)
               if k in old and old[k].get("fingerprint") != new[k].fingerprint]
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    parts = [f"{len(changed)} of {len(new)} trials changed since sweep {old_name} (same command)"]
    if changed:
        parts.append("changed: " + "; ".join(changed[:10]) + (f"; and {len(changed) - 10} more" if len(changed) > 10 else ""))
    if added:
        parts.append("new: " + ", ".join(added[:10]))
    if removed:
        parts.append("gone: " + ", ".join(removed[:10]))
    parts.append(f"this is a new sweep ({name}): every trial runs in it; {old_name} keeps its results")
    return ". ".join(parts)


SUITE_KEYS = {"categories", "variants", "seeds", "preset", "overrides"}


def known_suites() -> dict[str, Any]:
    """NAME -> file of every benchmark suite (bench/suites) and ablation grid (ablations/grids), sorted by name."""
    suites, grids = resources.suites(), resources.grids()
    both = sorted(set(suites) & set(grids))
    if both:
        raise MasfError(f"suite '{both[0]}' is both a benchmark suite and an ablation grid: rename one")
    return dict(sorted({**suites, **grids}.items()))


def load_suite(name: str) -> dict[str, Any]:
    """A benchmark suite or ablation grid by name, or a YAML path: categories, variants, seeds, preset, overrides.

    ``categories: all`` means every category under the data root; ``variants: ablations`` every
    registered variant plus the baseline.
    """
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise MasfError(f"suite file not found: {path}")
    else:
        known = known_suites()
        if name not in known:
            raise MasfError(f"unknown suite '{name}' (known: {', '.join(known)}, or a path to a YAML file)")
        path = known[name]
    data = read_yaml(path)
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise MasfError(f"{path}: unknown suite key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SUITE_KEYS))})")
    return data
