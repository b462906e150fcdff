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
    figure: Optional[Path] = typer.Option(None, "--figure", help="Also write the figures: a folder (category_bars.png, paired_differences.png, pro_curves.png), or NAME.png (the bars there, NAME_paired_differences.png and NAME_pro_curves.png beside)."),
    metrics: str = typer.Option("default", "--metrics", "-m", help="Columns: default (image AUROC, pixel AUROC, PRO, image AP), ader (the field's set: image AUROC/AP/F1-max, pixel AUROC/AP/F1-max, AUPRO, IoU-max, mAD) or comma-separated metric keys."),
    tables: str = typer.Option("category,ablation", "--tables", "-t", help="Which tables, comma-separated: category, ablation (with paired intervals), paired (per category, --variant vs --reference), efficiency."),
    reference: str = typer.Option("full", "--reference", help="The variant every paired difference is taken to."),
    paper: bool = typer.Option(False, "--paper", help="Show the MASF paper's reported figures beside (its Tables 1, 3, 4), for runs whose data was declared MVTec AD (run --dataset mvtec_ad)."),
    by_defect_type: bool = typer.Option(False, "--by-defect-type", help="Also a table of image AUROC and PRO per category and defect type of --variant (MVTec LOCO: logical and structural anomalies), for trials that report them."),
) -> None:
    """Per-category table of a variant and, with several variants, the ablation table with paired 95 % intervals (values in %).
    Runs of several datasets: one block per dataset, each averaged within itself."""
    from masf.report import figures as bf
    from masf.report import leaderboard as lb  # pandas and matplotlib load here, not for --help
    from masf.runner.tracking import default_tracking_uri

    lb.check_choice(selection, list(lb.SELECTIONS), "--selection")
    lb.check_choice(fmt, lb.FORMATS, "--format")
    columns = lb.pick_metrics(metrics)
    wanted = [t.strip() for t in tables.split(",") if t.strip()]
    for t in wanted:
        lb.check_choice(t, lb.TABLES, "--tables")
    uri = tracking_uri or default_tracking_uri()
    df, records, tables = build_tables(uri, experiment, sweep, variant, selection, columns, wanted, reference, paper,
                                       by_defect=by_defect_type)
    print_tables(tables, fmt)
    if figure is not None:
        nums = next((t.attrs["numbers"] for t, title in tables if title == lb.ablation_title(selection)), None)
        if figure.suffix.lower() == ".png":  # NAME.png: the bars there, the others beside it
            folder, names = figure.parent, (figure.name, f"{figure.stem}_paired_differences.png", f"{figure.stem}_pro_curves.png")
        else:
            folder, names = figure, bf.FIGURES
        paths = bf.write_figures(df, folder, selection, records, reference, columns, nums=nums, names=names)
        for path in paths:
            typer.echo(f"figure: {path}", err=fmt != "table")  # keep md/csv/latex on stdout clean


def build_tables(uri: str, experiment: str, sweep: Optional[str], variant: str, selection: str, columns: list[str],
                 wanted: list[str], reference: str = "full", paper: bool = False, paired: Optional[str] = None,
                 by_defect: bool = False):
    """(frame, records, [(table, title)]) of the sweep's runs: the tables named in ``wanted``; the per-category
    table of ``variant``, the paired one of ``paired`` (default: ``variant``) against ``reference``; with
    ``by_defect`` the per-defect-type table of ``variant`` after the per-category one."""
    from masf.report import leaderboard as lb
    from masf.report.store import MlflowRecords, load_frame

    df = load_frame(uri, experiment, sweep)
    records = MlflowRecords(uri)
    several = len(lb.variants_in(df)) > 1
    tables = []
    if "category" in wanted:
        tables.append((lb.category_table(df, variant, selection, columns, paper=paper), lb.category_title(variant, selection)))
    if by_defect:
        tables.append((lb.defect_table(df, variant, selection), lb.defect_title(variant, selection)))
    if "ablation" in wanted and several:
        tables.append((lb.ablation_table(df, selection, reference, columns, records, paper=paper), lb.ablation_title(selection)))
    if "paired" in wanted:
        paired = paired or variant
        if lb.base_variant(paired) == reference:
            raise lb.LeaderboardError(f"--tables paired: --variant {paired} is the reference; pick another variant")
        tables.append((lb.paired_category_table(df, paired, selection, reference, columns, records), lb.paired_title(paired, selection, reference)))
    if "efficiency" in wanted:
        from masf.report.efficiency import EFFICIENCY_TITLE, efficiency_table

        tables.append((efficiency_table(df), EFFICIENCY_TITLE))
    return df, records, tables


def print_tables(tables: list, fmt: str = "table") -> None:
    from masf.report import leaderboard as lb

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


def side_by_side(df, variants: list[str], metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc", "pro")):
    """Per category, each metric's value for every variant next to each other (last epoch, %, mean over seeds);
    rows of several datasets: one block per dataset (the variants it has), each with its own mean."""
    from masf.report import leaderboard as lb

    table = lb.per_dataset(_side_by_side, df, variants, metrics).fillna("—")
    table.attrs["caption"] = ("Selection: last epoch (headline); values in %, mean over the finished seeds; student alone: "
                              "the student's cosine maps without the bank or TTSA; `masf-bench leaderboard` gives the "
                              "full tables, with paired intervals")
    return table


def _side_by_side(df, variants: list[str], metrics: tuple[str, ...]):
    """``side_by_side`` of one dataset's rows, of the variants it has (LeaderboardError when it has none)."""
    import pandas as pd

    from masf.report import leaderboard as lb

    variants = [v for v in variants if v in set(df.variant)]
    if not variants:
        raise lb.LeaderboardError(f"no trials of the variants asked for (variants here: {', '.join(lb.variants_in(df))})")
    numbers = {v: lb.category_numbers(df, v, "last") for v in variants}
    fmt = lambda x: f"{x:.2f}" if x == x else "—"  # noqa: E731
    columns = {f"{lb.METRICS[m]} {v}": numbers[v][f"{m}_mean"].map(fmt) for m in metrics for v in variants}
    # the student's map alone (no TTSA) beside the first variant that has a student: what MASF's own parts give
    student = f"{lb.STUDENT_ONLY[0]}_mean"
    with_student = [v for v in variants if numbers[v][student].notna().any()]
    if with_student:
        columns[f"student alone image AUROC {with_student[0]}"] = numbers[with_student[0]][student].map(fmt)
    table = pd.DataFrame(columns)
    table.index.name = "category"
    return table


def sweep_tables(uri: str, experiment: str, sweep: str, variants: list[str], frame=None) -> None:
    """What ``masf-bench run`` ends with: per category, the headline metrics of every variant side by side.
    ``frame``: the sweep's rows as its leaderboard read them (else read from the store)."""
    from masf.report import leaderboard as lb
    from masf.report.store import load_frame

    df = frame if frame is not None else load_frame(uri, experiment, sweep)
    planned = [v for v in variants if v in set(lb.variants_in(df))]
    if planned:
        print_tables([(side_by_side(df, planned[:4]), f"{', '.join(planned[:4])}: per category, side by side")])
