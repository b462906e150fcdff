"""Rows of several datasets: what a trial's numbers are averaged within (its dataset label), and tables built
per dataset and stacked under a first index level, never averaged across datasets."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from masf.errors import LeaderboardError
from masf.report.paper import dataset_name

DATASET_LEVEL = "dataset"  # the first index level of a table spanning datasets
SYNTHETIC = "synthetic"  # the label of undeclared data in the synthetic cache's folders (synthetic-v<N>-...)


def dataset_label(dataset: str, layout: str, root: str) -> str:
    """What a trial's numbers are averaged within: its declared dataset's name ('mvtec_ad', 'visa'); undeclared,
    its layout and data root folder ('mvtec_ad layout: wood_real'), a synthetic cache folder as 'synthetic';
    '' for a run that carries neither (logged before trials were tagged with their data)."""
    declared = dataset_name(dataset)
    if declared:
        return declared
    if not (layout or root):
        return ""
    folder = PurePath(root).name
    return SYNTHETIC if folder.startswith(f"{SYNTHETIC}-v") else f"{layout or 'mvtec_ad'} layout: {folder}"


def key_scope(key: str) -> str:
    """A trial key's category part: 'bottle' of 'bottle/full/seed0', 'visa/pcb1' of 'visa/pcb1/full/seed0'."""
    return key.rsplit("/", 2)[0]


def distinct_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Undeclared data of one label read from several roots: each label gets its root, so they never average."""
    roots = df.groupby("dataset_label").data_root.nunique()
    pick = df.dataset_label.isin(roots[roots > 1].index) & df.dataset.map(dataset_name).eq("")
    df.loc[pick, "dataset_label"] = df.loc[pick, "dataset_label"] + " (" + df.loc[pick, "data_root"] + ")"
    return df


def datasets_in(df: pd.DataFrame) -> list[str]:
    """The dataset labels of these rows, sorted."""
    return sorted(df.dataset_label.unique())


def by_dataset(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per dataset label, sorted; every part keeps the frame's attrs (its sweeps)."""
    parts = []
    for label in datasets_in(df):
        part = df[df.dataset_label == label]
        part.attrs = dict(df.attrs)
        parts.append((label, part))
    return parts


def _merged_columns(lists: Sequence[Sequence[str]]) -> list[str]:
    """The union of column lists, each column after the one it follows in the first list that has it."""
    order: list[str] = []
    for cols in lists:
        for i, c in enumerate(cols):
            if c not in order:
                order.insert(order.index(cols[i - 1]) + 1 if i else 0, c)
    return order


def stack_datasets(parts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Each dataset's frame (of rows spanning datasets) under a first index level "dataset", also when only one
    dataset has a frame; columns merged, absent cells NaN."""
    columns = _merged_columns([list(p.columns) for p in parts.values()])
    return pd.concat({k: p.reindex(columns=columns) for k, p in parts.items()}, names=[DATASET_LEVEL])


def each_dataset(df: pd.DataFrame, fn: Callable[[pd.DataFrame], Any]) -> dict[str, Any]:
    """``fn(rows)`` of each dataset's rows, by label. A dataset whose rows ``fn`` refuses (LeaderboardError: no
    trials of the variant asked for, ...) is left out; when every one is, ``fn`` of all the rows raises the error."""
    out = {}
    for label, part in by_dataset(df):
        try:
            out[label] = fn(part)
        except LeaderboardError:
            continue
    if not out:
        fn(df)
    return out


def per_dataset(numbers: Callable[..., pd.DataFrame], df: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """``numbers(rows, *args, **kwargs)``, of rows spanning datasets per dataset, stacked (``stack_datasets``)."""
    if len(datasets_in(df)) <= 1:
        return numbers(df, *args, **kwargs)
    return stack_datasets(each_dataset(df, lambda part: numbers(part, *args, **kwargs)))


def dataset_note(parts: Sequence[Any]) -> str:
    return (f"; one block per dataset ({len(parts)}), each averaged within itself, never across datasets"
            if len(parts) > 1 else "")


def joined_extras(extras: Mapping[str, str]) -> str:
    """The caption notes of each dataset block: as they are for one block, else each once and labelled."""
    if len(extras) == 1:
        return next(iter(extras.values()))
    seen: dict[str, list[str]] = {}
    for label, extra in extras.items():
        if extra:
            seen.setdefault(extra, []).append(label)
    return "".join(f"; {', '.join(labels)}: {extra.removeprefix('; ')}" for extra, labels in seen.items())
