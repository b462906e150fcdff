"""``masf-bench leaderboard``: paper-style tables from the MLflow runs of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def leaderboard(
    experiment: str = typer.Option("masf-bench", "--experiment", "-e", envvar="MASF_EXPERIMENT", help="MLflow experiment of the sweep."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default: sqlite file mlflow.db in the working directory)."),
    selection: str = typer.Option("last", "--selection", "-s", help="last: the last epoch (the headline); best_on_val: the epoch chosen on the validation split; best_on_test: the epoch chosen on the test set (the paper's protocol, labelled test-selected)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table (terminal), md (GitHub markdown), csv (numeric) or latex (booktabs)."),
    variant: str = typer.Option("full", "--variant", "-v", help="Variant of the per-category table (see `masf-bench variants`)."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Sweep name, or 'all' to merge every sweep (default: the newest sweep of the experiment)."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Also write the per-category bar chart (PNG, image AUROC, every variant) there."),
) -> None:
    """Per-category table of a variant and, with several variants, the ablation table (values in %)."""
    from masf import leaderboard as lb  # pandas and matplotlib load here, not for --help
    from masf.runner.tracking import default_tracking_uri

    lb.check_choice(selection, list(lb.SELECTIONS), "--selection")
    lb.check_choice(fmt, lb.FORMATS, "--format")
    df = lb.load_frame(tracking_uri or default_tracking_uri(), experiment, sweep)
    tables = [(lb.category_table(df, variant, selection), lb.category_title(variant, selection))]
    if len(lb.variants_in(df)) > 1:
        tables.append((lb.ablation_table(df, selection), lb.ablation_title(selection)))
    console = Console(highlight=False)
    for i, (table, title) in enumerate(tables):
        out = lb.format_table(table, fmt, title)
        if fmt == "table":
            need = console.measure(out, options=console.options.update_width(1000))
            width = max(console.width, need.minimum) if console.is_terminal else max(80, need.maximum)
            Console(highlight=False, width=width).print(out)  # never cut a number; a pipe gets whole rows
        elif fmt == "csv":
            typer.echo(f"# {title}. {table.attrs['caption']}\n{out}", nl=False)
        else:
            typer.echo(out, nl=False)
        if i < len(tables) - 1:
            typer.echo("")
    if figure is not None:
        path = lb.category_bars(df, figure, selection)
        typer.echo(f"figure: {path}", err=fmt != "table")  # keep md/csv/latex on stdout clean
