"""What a sweep runs: trials (category x variant x seed), its data, its name.

The data is one or more :class:`DataSource` (a root read in its layout, masf/data/layouts.py): the
``--data-root`` (else the declared dataset's ``$NAME_ROOT``; undeclared, ``$MVTEC_AD_ROOT``, else the
synthetic dataset) of a single-dataset sweep, or each entry of a suite's ``datasets:`` list. In a sweep given as such a list, trial keys carry the dataset
(``dataset/category/variant/seedN``) so that two datasets' categories of one name never meet.

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
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from masf import resources
from masf.config import Config, build_config, flatten, read_yaml
from masf.data import MVTEC_CATEGORIES
from masf.data.layouts import DATASETS, Layout, canonical_dataset, dataset_layout, resolve_layout
from masf.errors import DataError, MasfError
from masf.layout import cache_dir
from masf.fingerprint import config_fingerprint
from masf.config.variants import get_variant, list_variants

SYNTH_VERSION = 1  # bump when the generator's output changes
SYNTH_ARGS = {"seed": 0, "size": 128, "n_train": 20, "n_test": 20}


@dataclass(frozen=True)
class TrialSpec:
    key: str  # "category/variant/seedN" ("dataset/category/variant/seedN" across datasets); stable across retries and --resume
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

    @property
    def scoped_category(self) -> str:
        """The key's category part: "category", or "dataset/category" in a sweep across datasets."""
        return self.key.rsplit("/", 2)[0]


def trial_key(category: str, variant: str, seed: int, dataset: str = "") -> str:
    """"category/variant/seedN"; with ``dataset`` (a sweep across datasets) "dataset/category/variant/seedN"."""
    return f"{dataset}/{category}/{variant}/seed{seed}" if dataset else f"{category}/{variant}/seed{seed}"


@dataclass(frozen=True)
class DataSource:
    """One dataset a sweep reads: its declared name ("" undeclared), absolute root, layout name, categories."""

    dataset: str
    root: Path
    layout: str
    categories: tuple[str, ...]

    def data_keys(self) -> list[str]:
        """The data.* config keys its trials get beside data.root: the layout and, where declared, the dataset."""
        return [f"data.layout={self.layout}"] + ([f"data.dataset={self.dataset}"] if self.dataset else [])


class MissingRoot(DataError):
    """A dataset of a sweep has no data root, or its root is not a folder (``--skip-missing`` skips it)."""


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


def root_env(dataset: str) -> str:
    """The environment variable of a dataset's root: ``NAME_ROOT`` (VISA_ROOT, ...); MVTEC_AD_ROOT for undeclared data."""
    return f"{(dataset or 'mvtec_ad').upper()}_ROOT"


def resolve_data_root(data_root: Optional[str], dataset: str = "") -> tuple[Path, bool]:
    """--data-root, else the dataset's variable (``root_env``), else for undeclared data the synthetic cache.
    Returns (absolute root, synthetic?); a declared dataset is never the synthetic one."""
    env = root_env(dataset)
    given = data_root or os.environ.get(env)
    if given:
        root = Path(given).expanduser().resolve()
        if not root.is_dir():
            raise DataError(f"{'--data-root' if data_root else env}: {root} is not a folder")
        return root, False
    if dataset:
        raise DataError(f"--dataset {dataset}: no data root: pass --data-root PATH or set {env}")
    return synthetic_root(), True


def resolve_categories(root: Path, categories: Optional[Sequence[str]], all_categories: bool,
                       layout: Optional[Layout] = None) -> list[str]:
    """The categories to run under ``root`` read in ``layout`` (default MVTec AD): every one found, or the named
    ones, each checked (an unknown name: one line listing the found ones)."""
    layout = layout or dataset_layout("mvtec_ad")
    if all_categories:
        found = layout.categories(root)
        if not found:
            raise DataError(f"no categories under {root} (expected the {layout.title} layout: {layout.evidence})")
        return found
    if not categories:
        raise MasfError("name the categories: --categories a,b or --all-categories")
    for name in categories:
        layout.check_category(root, name)
    return list(dict.fromkeys(categories))


def single_source(data_roots: Sequence[str], dataset: str, layout: str, categories: Optional[Sequence[str]],
                  all_categories: bool) -> tuple[DataSource, Optional[str]]:
    """The data of a single-dataset sweep and the line to print about it: how the layout was found (undeclared
    data), or that the synthetic default is used; None for a declared dataset.

    ``data_roots``: the --data-root values, one PATH or one NAME=PATH (which declares NAME when ``dataset`` is "").
    """
    plain, named = parse_data_roots(data_roots)
    dataset = canonical_dataset(dataset)
    if named:
        names = ", ".join(named)
        if plain is not None or len(named) > 1:
            raise DataError(f"--data-root: {names}: a sweep of several datasets is a suite with a datasets: list; "
                            "a single-dataset sweep takes one --data-root PATH or NAME=PATH")
        if dataset and dataset not in named:
            raise DataError(f"--data-root {names}=: this sweep runs dataset {dataset}: give --data-root {dataset}=PATH or PATH")
        (dataset, plain), = named.items()
    root, synthetic = resolve_data_root(plain, dataset)
    if synthetic and not layout:
        found = dataset_layout("mvtec_ad")
        line = f"no --data-root and no MVTEC_AD_ROOT: using the synthetic MVTec-layout dataset at {root}"
    else:
        found, line = resolve_layout(root, dataset, layout)
    cats = resolve_categories(root, categories, all_categories, found)
    return DataSource(dataset, root, found.name, tuple(cats)), None if dataset else line


def parse_data_roots(values: Sequence[str]) -> tuple[Optional[str], dict[str, str]]:
    """``--data-root`` values: at most one plain PATH, and NAME=PATH per dataset (NAME: a dataset or alias,
    returned canonical). A value is NAME=PATH when the part before its first '=' is a bare name."""
    plain, named = None, {}
    for value in values:
        name, sep, path = str(value).partition("=")
        if sep and re.fullmatch(r"[A-Za-z0-9_-]+", name):
            try:
                key = canonical_dataset(name)
            except DataError as exc:
                raise DataError(f"--data-root {value}: {exc}") from None
            if key in named or not path:
                raise DataError(f"--data-root {value}: {'a path is needed after =' if not path else f'{key} is given twice'}")
            named[key] = path
        elif plain is not None:
            raise DataError(f"--data-root {value}: a second plain path (give one PATH, or NAME=PATH per dataset)")
        else:
            plain = str(value)
    return plain, named


def expand_root(text: str) -> Path:
    """``text`` with $VAR, ${VAR} and ~ expanded, made absolute (relative to the current directory);
    MissingRoot naming the variable when one is not set."""
    expanded = os.path.expanduser(os.path.expandvars(str(text)))
    unset = re.search(r"\$\{?(\w+)\}?", expanded)
    if unset:
        raise MissingRoot(f"${unset.group(1)} is not set")
    return Path(expanded).resolve()


def _entry_root(name: str, entry: Mapping[str, Any], named: Mapping[str, str], suite: str) -> Path:
    """A suite dataset's root: --data-root NAME=PATH, else its data_root, else $NAME_ROOT; MissingRoot, one line, else."""
    env, fix = root_env(name), f"--data-root {name}=PATH"
    if name in named:
        text, where = named[name], f"--data-root {name}={named[name]}"
    elif entry.get("data_root"):
        text, where = str(entry["data_root"]), f"data_root {entry['data_root']} of suite {suite}"
    elif os.environ.get(env):
        text, where = os.environ[env], f"{env}={os.environ[env]}"
    else:
        raise MissingRoot(f"dataset {name}: no data root: set data_root in suite {suite}, set {env}, or pass {fix}")
    try:
        root = expand_root(text)
    except MissingRoot as exc:
        raise MissingRoot(f"dataset {name}: {where}: {exc} (set it, or pass {fix})") from None
    if not root.is_dir():
        raise MissingRoot(f"dataset {name}: {where}: {root} is not a folder (pass {fix})")
    return root


def suite_sources(entries: Sequence[Mapping[str, Any]], data_roots: Sequence[str] = (), suite: str = "",
                  categories: Optional[Sequence[str]] = None, all_categories: bool = False, only: str = "",
                  layout: str = "", skip_missing: bool = False) -> tuple[list[DataSource], list[str]]:
    """The datasets of a suite's ``datasets:`` entries (see ``check_datasets``) and one line per dataset skipped.

    ``data_roots``: the --data-root values (NAME=PATH per dataset; a plain PATH only when one dataset is run);
    ``categories``/``all_categories``: the command line's, for every dataset instead of its entry's; ``only``:
    --dataset, run that entry alone; ``skip_missing``: a dataset without a root folder is skipped with a line
    instead of failing the sweep (some must be left).
    """
    entries = check_datasets(entries, f"suite {suite}")
    names = [e["dataset"] for e in entries]
    if only:
        only = canonical_dataset(only)
        if only not in names:
            raise DataError(f"--dataset {only}: suite {suite} has no such dataset (its datasets: {', '.join(names)})")
        entries = [e for e in entries if e["dataset"] == only]
    plain, named = parse_data_roots(data_roots)
    stray = sorted(set(named) - {e["dataset"] for e in entries})
    if stray:
        raise DataError(f"--data-root {stray[0]}=: suite {suite} runs no dataset {stray[0]} (its datasets: {', '.join(e['dataset'] for e in entries)})")
    if plain is not None:
        if len(entries) > 1:
            raise DataError(f"--data-root {plain}: suite {suite} spans datasets ({', '.join(names)}): give --data-root NAME=PATH for each")
        named = {entries[0]["dataset"]: plain}
    sources, skipped = [], []
    for e in entries:
        name = e["dataset"]
        try:
            root = _entry_root(name, e, named, suite)
        except MissingRoot as exc:
            if not skip_missing:
                raise
            skipped.append(f"skipped: {exc}")
            continue
        found, _ = resolve_layout(root, name, layout)
        every = all_categories or (categories is None and e["categories"] == "all")
        try:
            cats = resolve_categories(root, None if every else (categories or e["categories"]), every, found)
        except MasfError as exc:
            raise type(exc)(f"dataset {name}: {exc}") from None
        sources.append(DataSource(name, root, found.name, tuple(cats)))
    if not sources:
        raise DataError(f"suite {suite}: no dataset has its data root; " + "; ".join(skipped))
    return sources, skipped


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
    data: Sequence[str] = (),
    scope: str = "",
) -> list[TrialSpec]:
    """Every category x variant x seed under ``root``; ``data``: further data.* keys (layout, dataset) after the
    overrides; ``scope``: the dataset that prefixes the keys (a sweep across datasets)."""
    trials = []
    for category in categories:
        for variant in variants:
            for seed in seeds:
                keys = [*overrides, f"data.root={root}", *data, f"data.category={category}", f"train.seed={seed}"]
                cfg = build_config(preset, keys, variant=variant)
                trials.append(TrialSpec(trial_key(category, variant, seed, scope), category, variant, seed, cfg.to_dict()))
    return trials


def plan_sources(sources: Sequence[DataSource], variants: Sequence[str], seeds: Sequence[int], preset: str,
                 overrides: Sequence[str] = (), scoped: bool = False) -> list[TrialSpec]:
    """The trials of every source, in order; ``scoped``: keys carry the dataset (a sweep given as a list of datasets)."""
    return [t for s in sources for t in plan_trials(s.root, s.categories, variants, seeds, preset, overrides,
                                                    s.data_keys(), s.dataset if scoped else "")]


def scoped_categories(sources: Sequence[DataSource]) -> list[str]:
    """The key categories of the sources of a sweep across datasets: "dataset/category"."""
    return [f"{s.dataset}/{c}" for s in sources for c in s.categories]


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


SUITE_KEYS = {"categories", "variants", "seeds", "preset", "overrides", "dataset", "datasets"}
DATASET_KEYS = {"dataset", "data_root", "categories"}  # of each entry of a suite's datasets: list


def known_suites() -> dict[str, Any]:
    """NAME -> file of every benchmark suite (bench/suites) and ablation grid (ablations/grids), sorted by name."""
    suites, grids = resources.suites(), resources.grids()
    both = sorted(set(suites) & set(grids))
    if both:
        raise MasfError(f"suite '{both[0]}' is both a benchmark suite and an ablation grid: rename one")
    return dict(sorted({**suites, **grids}.items()))


def known_line(known: Mapping[str, Any]) -> str:
    """'known: a, b; per dataset: c, d': the suites and grids by name, those that declare their dataset(s) apart."""
    per_dataset = [n for n, f in known.items() if {"dataset", "datasets"} & set(read_yaml(f))]
    rest = [n for n in known if n not in per_dataset]
    return f"known: {', '.join(rest)}" + (f"; per dataset: {', '.join(per_dataset)}" if per_dataset else "")


def check_datasets(entries: Any, where: str) -> list[dict[str, Any]]:
    """A suite's ``datasets:`` list checked (each entry a known ``dataset``, once; ``categories`` a list or
    ``all``; ``data_root`` a string), the names canonical; MasfError, one line naming ``where``, else."""
    if not isinstance(entries, list) or not entries:
        raise MasfError(f"{where}: datasets must be a non-empty list of entries (dataset, data_root, categories)")
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        at = f"{where}: datasets[{i}]"
        if not isinstance(entry, dict) or "dataset" not in entry:
            raise MasfError(f"{at}: each entry needs a dataset key (one of {', '.join(DATASETS)})")
        unknown = sorted(set(entry) - DATASET_KEYS)
        if unknown:
            raise MasfError(f"{at}: unknown key '{unknown[0]}' (known: {', '.join(sorted(DATASET_KEYS))})")
        try:
            name = canonical_dataset(str(entry["dataset"]))
        except DataError as exc:
            raise DataError(f"{at}: {exc}") from None
        cats = entry.get("categories", "all")
        if cats != "all" and not (isinstance(cats, list) and cats and all(isinstance(c, str) for c in cats)):
            raise MasfError(f"{at} ({name}): categories must be 'all' or a list of names (quote names like '01'), got {cats!r}")
        if "data_root" in entry and not isinstance(entry["data_root"], str):
            raise MasfError(f"{at} ({name}): data_root must be a path, got {entry['data_root']!r}")
        if name in (e["dataset"] for e in out):
            raise MasfError(f"{at}: dataset {name} is listed twice")
        out.append({**entry, "dataset": name, "categories": cats})
    return out


def load_suite(name: str) -> dict[str, Any]:
    """A benchmark suite or ablation grid by name, or a YAML path: categories (or datasets), variants, seeds,
    preset, overrides, and the dataset it declares.

    ``categories: all`` means every category under the data root; ``variants: ablations`` every
    registered variant plus the baseline. ``datasets:`` instead of ``categories:`` spans datasets: a list
    of entries ``{dataset, data_root, categories}`` (``check_datasets``); the suite's ``categories`` is
    then the union of theirs ('all' when one says all), for what lists a suite's categories.
    """
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise MasfError(f"suite file not found: {path}")
    else:
        known = known_suites()
        if name not in known:
            raise MasfError(f"unknown suite '{name}' ({known_line(known)}, or a path to a YAML file)")
        path = known[name]
    data = read_yaml(path)
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise MasfError(f"{path}: unknown suite key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SUITE_KEYS))})")
    if "datasets" in data:
        if "categories" in data or "dataset" in data:
            raise MasfError(f"{path}: give datasets (each with its categories) or categories and dataset, not both")
        data["datasets"] = check_datasets(data["datasets"], str(path))
        cats = [e["categories"] for e in data["datasets"]]
        data["categories"] = "all" if "all" in cats else sorted({c for cs in cats for c in cs})
    elif "dataset" in data:
        try:
            data["dataset"] = canonical_dataset(str(data["dataset"]))
        except DataError as exc:
            raise DataError(f"{path}: dataset: {exc}") from None
    return data
