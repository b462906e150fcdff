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

from masf.config import Config, build_config, read_yaml
from masf.data import MVTEC_CATEGORIES
from masf.data.mvtec import category_dir, check_category_name, list_categories
from masf.errors import DataError, MasfError
from masf.variants import get_variant, list_variants

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
    def dirname(self) -> str:
        return self.key.replace("/", "__")


def trial_key(category: str, variant: str, seed: int) -> str:
    return f"{category}/{variant}/seed{seed}"


def cache_dir() -> Path:
    base = os.environ.get("MASF_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "masf-bench")
    return Path(base)


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


def check_teacher(cfg: Config) -> None:
    """Build the teacher once in the driver: an unknown backbone or missing weights fail before any trial."""
    from masf.teacher import build_teacher

    build_teacher(cfg.model.teacher)


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


def sweep_name(root: Path, categories: Sequence[str], variants: Sequence[str], seeds: Sequence[int], preset: str, overrides: Sequence[str]) -> str:
    """A stable name: the same arguments give the same sweep, which is what --resume finds."""
    blob = json.dumps([str(root), sorted(categories), sorted(variants), sorted(seeds), preset, sorted(overrides)])
    return f"{Path(preset).stem}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


SUITE_DIR = Path(__file__).resolve().parents[2] / "bench" / "suites"
SUITE_KEYS = {"categories", "variants", "seeds", "preset", "overrides"}


def load_suite(name: str) -> dict[str, Any]:
    """A benchmark suite (bench/suites/NAME.yaml or a path): categories, variants, seeds, preset, overrides.

    ``categories: all`` means every category under the data root; ``variants: ablations`` every
    registered variant plus the baseline.
    """
    path = Path(name) if name.endswith((".yaml", ".yml")) else SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITE_DIR.glob("*.yaml")))
        raise MasfError(f"unknown suite '{name}' (known: {known}, or a path to a YAML file)")
    data = read_yaml(path)
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise MasfError(f"{path}: unknown suite key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SUITE_KEYS))})")
    return data
