"""``masf-bench data``: check a dataset in its published layout, or write the synthetic one in any of them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from masf.data import MVTEC_CATEGORIES
from masf.errors import DataError

if TYPE_CHECKING:
    from masf.data.validate import Report

app = typer.Typer(
    help="Check datasets in their published layouts (MVTec AD, MPDD, MVTec 3D-AD, VisA, MVTec AD 2, MVTec LOCO, BTAD) "
    "and generate the synthetic one in any of them.",
    no_args_is_help=True,
)


_DATASETS = "mvtec_ad, mpdd, mvtec_3d, visa, mvtec_ad2, mvtec_loco, btad"


def _counts_table(report: "Report") -> Table:
    table = Table(title=f"images in {report.root}", title_justify="left")
    table.add_column("category")
    table.add_column("split")
    table.add_column("defect type")
    table.add_column("images", justify="right")
    for category in report.categories:
        counts = report.counts.get(category, {})
        keys = sorted(counts, key=lambda k: (k[0] != "train", k[1] != "good", k[1]))
        for i, (split, defect) in enumerate(keys):
            table.add_row(category if i == 0 else "", split, defect, str(counts[(split, defect)]))
        if not keys:
            table.add_row(category, "-", "-", "0")
    return table


@app.command()
def check(
    root: Path = typer.Argument(..., help="Dataset root, as published after unpacking (MVTec AD: ROOT/CATEGORY/train/good, "
                                "ROOT/CATEGORY/test/DEFECT, ...; docs/datasets/ shows each dataset's tree)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Check only this category (default: every category under ROOT)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="What ROOT holds, which picks the layout it is read in: " + _DATASETS
                                          + " (default: recognised from the folders)."),
    shallow: bool = typer.Option(False, "--shallow", help="Read image headers only (faster; misses truncated files and non-binary masks)."),
) -> None:
    """Report every problem of a dataset in its published layout at once (missing or corrupt files, bad masks, empty splits)."""
    console = Console(highlight=False)
    from masf.data.validate import validate_dataset

    report = validate_dataset(root, category, deep=not shallow, dataset=dataset or "")
    how = getattr(report, "how", "")
    if how:
        console.print(Text(how), soft_wrap=True)
    if report.categories:
        console.print(_counts_table(report))
    for problem in report.problems:
        style = "red" if problem.level == "error" else "yellow"
        prefix = "error" if problem.level == "error" else "warning"
        console.print(Text(f"{prefix}: {problem}", style=style), soft_wrap=True)
    n_err, n_warn = len(report.errors), len(report.warnings)
    if n_err:
        console.print(Text(f"{n_err} problem{'s' if n_err != 1 else ''} in {report.root}", style="bold red"), soft_wrap=True)
        raise typer.Exit(1)
    warned = f" ({n_warn} warning{'s' if n_warn != 1 else ''})" if n_warn else ""
    cats = len(report.categories)
    console.print(
        Text(f"OK: {cats} categor{'ies' if cats != 1 else 'y'}, {report.n_images} images, no problems{warned}", style="bold green"),
        soft_wrap=True,
    )


def parse_categories(text: Optional[str]) -> Optional[list[str]]:
    """``"a,b"`` -> ["a", "b"], each checked against the 15 MVTec AD names."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise DataError(f"--categories {text!r} names no category (choose from: {', '.join(MVTEC_CATEGORIES)})")
    for name in names:
        if name not in MVTEC_CATEGORIES:
            raise DataError(f"unknown category '{name}' (choose from: {', '.join(MVTEC_CATEGORIES)})")
    return names


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the dataset into (the root of its layout)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated MVTec AD category names, e.g. bottle,wood (default: the generator's own set)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; the same seed writes the same images."),
    size: Optional[int] = typer.Option(None, "--size", min=8, help="Image side in pixels."),
    n_train: Optional[int] = typer.Option(None, "--train", min=1, help="Normal training images per category."),
    n_test: Optional[int] = typer.Option(None, "--test", min=1, help="Test images per category."),
    layout: str = typer.Option("mvtec_ad", "--layout", help="The published layout to write it in: " + _DATASETS + ". Where the "
                               "layout publishes a validation split (mvtec_3d, mvtec_ad2, mvtec_loco), the training normals that "
                               "data.val_fraction=0.2 with data.seed=0 would hold out go to validation/good."),
) -> None:
    """Write a synthetic dataset in the MVTec AD layout, or in another dataset's published layout (for demos and tests)."""
    kwargs: dict[str, Any] = {"categories": parse_categories(categories)}
    for key, value in (("seed", seed), ("size", size), ("n_train", n_train), ("n_test", n_test)):
        if value is not None:
            kwargs[key] = value
    if layout == "mvtec_ad":
        from masf.data.synth import generate_dataset  # imported here: only this command needs it

        written = generate_dataset(out, **kwargs)
    else:
        from masf.data.synth_layouts import check_layout, write_layout

        check_layout(layout)  # before anything is drawn
        from masf.data.synth import generate_dataset

        with tempfile.TemporaryDirectory(prefix="masf-synth-") as tmp:
            generate_dataset(Path(tmp), **kwargs)
            written = write_layout(Path(tmp), out, layout)

    console = Console(highlight=False)
    held = any("validation/good" in counts for counts in written.values())
    where = "" if layout == "mvtec_ad" else f" ({layout} layout)"
    table = Table(title=f"synthetic dataset in {out}{where}", title_justify="left")
    columns = [("category", "left"), ("train", "right"), ("test good", "right"), ("test defective", "right"), ("defect types", "left")]
    for name, justify in columns + ([("validation", "right")] if held else []):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for category, counts in written.items():
        train = sum(n for k, n in counts.items() if k.startswith("train/"))
        good = sum(n for k, n in counts.items() if k == "test/good")
        defects = {k.split("/", 1)[1]: n for k, n in counts.items() if k.startswith("test/") and k != "test/good"}
        row = [category, str(train), str(good), str(sum(defects.values())), ", ".join(sorted(defects))]
        table.add_row(*row, *([str(counts.get("validation/good", 0))] if held else []))
    console.print(table)
    check = f"masf-bench data check {out}" + ("" if layout == "mvtec_ad" else f" --dataset {layout}")
    console.print(Text(f"check it with: {check}", style="green"), soft_wrap=True)
