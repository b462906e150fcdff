"""``masf-bench``: thin typer commands over library functions the tests also call.

The tool's own errors (:class:`masf.errors.MasfError`) become one red line and
exit code 1, with no traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

from masf.cli import data as data_cmd
from masf.cli.leaderboard import leaderboard
from masf.cli.run import run, ui
from masf.cli.train import train
from masf.errors import MasfError

app = typer.Typer(
    name="masf-bench",
    help="Train, evaluate and benchmark MASF on MVTec-layout anomaly-detection data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmd.app, name="data")
app.command(help="Train and evaluate one (category, variant, seed) trial.")(train)
app.command(help="Sweep categories x variants x seeds on Ray Tune, tracked in MLflow.")(run)
app.command(help="Serve the MLflow UI on the sweep store (127.0.0.1 unless told otherwise).")(ui)
app.command(help="Paper-style tables from the MLflow runs: per category and per ablation variant.")(leaderboard)


@app.command()
def variants() -> None:
    """List the registered ablation variants and what each switches off."""
    from masf.config.variants import get_variant, list_variants

    console = Console(highlight=False)
    for name in list_variants():
        v = get_variant(name)
        tag = " (baseline)" if v.baseline else ""
        console.print(f"[bold]{name}[/]{tag}: {v.description}")



@app.command()
def paper() -> None:
    """Print the MASF paper's reported figures (its Tables 1, 3 and 4, masf/report/paper.py) as markdown."""
    from masf.report.paper import markdown

    typer.echo(markdown(), nl=False)


err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except MasfError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
