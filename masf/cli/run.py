"""``masf-bench run`` (the sweep), ``masf-bench leaderboard`` and ``masf-bench ui``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from masf.cli.train import PRESET_HELP, SET_HELP
from masf.errors import MasfError


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value) or ["0"]]
    except ValueError:
        raise MasfError(f"--seeds: expected integers separated by commas, got '{value}'") from None


def run(
    all_categories: bool = typer.Option(False, "--all-categories", help="Every category folder under the data root."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated categories, e.g. bottle,wood."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated variants (default: full). See `masf-bench variants`."),
    ablations: bool = typer.Option(False, "--ablations", help="Every registered variant plus the baseline."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: 0)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP + " (default: demo)"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    data_root: list[str] = typer.Option(
        [], "--data-root",
        help="Dataset root, read in its dataset's layout or the one recognised (default: $NAME_ROOT of --dataset, e.g. "
             "$VISA_ROOT; undeclared: $MVTEC_AD_ROOT, else the synthetic dataset). For a suite across datasets: "
             "NAME=PATH, repeated, e.g. --data-root visa=/data/visa."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="A suite's dataset whose root is not given or not a folder is skipped with a line instead of stopping the sweep."),
    address: Optional[str] = typer.Option(None, "--address", envvar="MASF_RAY_ADDRESS", help="Ray cluster: auto, host:port or ray://host:10001 (default: a local Ray in-process)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default: sqlite file mlflow.db in the working directory)."),
    experiment: str = typer.Option("masf-bench", "--experiment", "-e", envvar="MASF_EXPERIMENT", help="MLflow experiment of the sweep."),
    storage: Optional[Path] = typer.Option(None, "--storage", envvar="MASF_STORAGE", help="Trial checkpoints and results (default: ./masf-runs; shared storage on a cluster)."),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs per trial, fractions allowed (default: 1 when the cluster has GPUs, else 0)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPUs per trial (also its torch threads)."),
    max_concurrent: int = typer.Option(0, "--max-concurrent", help="Most trials at once (0: as many as resources allow)."),
    max_failures: int = typer.Option(2, "--max-failures", help="Retries of a failing trial, each from its last checkpoint."),
    reuse_workers: Optional[bool] = typer.Option(
        None, "--reuse-workers/--fresh-workers",
        help="Run the next trial in a finished trial's worker process (imports and backbone kept) or start a fresh "
             "process per trial (memory, GPU included, fully released). Default: reuse on a local Ray, fresh on a cluster."),
    share: bool = typer.Option(
        True, "--share/--no-share",
        help="Variants that differ only in how they score (no_ttsa, no_samb, bank_only beside full) share one "
             "training and are scored from it (masf/trial/sharing.py); --no-share trains each trial alone."),
    feature_cache_gb: float = typer.Option(
        20.0, "--feature-cache-gb",
        help="Keep the teacher's features in STORAGE/feature-cache up to this size (>= 0), for every trial of the sweep (0: in memory only, per trial; CUDA trials use it only with --set train.feature_cache=on)."),
    resume: bool = typer.Option(False, "--resume", help="Finish a stopped sweep (same arguments): only missing trials run."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Declare what the data is (data.dataset: mvtec_ad, mpdd, mvtec_3d, visa, mvtec_ad2, mvtec_loco, btad): it picks the layout the root is read in, and mvtec_ad lets `leaderboard --paper` show the MASF paper's reported figures beside these results; never inferred from category names. With a suite across datasets: run that dataset alone."),
    suite: Optional[str] = typer.Option(None, "--suite", help="A benchmark suite (bench/suites) or ablation grid (ablations/grids) by name, or a YAML path: its categories (or datasets), variants, seeds, preset and dataset, where not given here."),
) -> None:
    """Sweep categories x variants x seeds on Ray Tune, tracked in MLflow."""
    from masf.runner.sweep import SweepOptions, run_sweep

    datasets = None
    if suite:
        from masf.runner.plan import load_suite

        spec = load_suite(suite)
        datasets = spec.get("datasets")  # across datasets: each entry's categories, unless given here for all
        if datasets is None and not (all_categories or categories):
            cats = spec.get("categories")
            all_categories = cats == "all"
            categories = None if all_categories else ",".join(map(str, cats or []))
        if not (ablations or variants):
            vs = spec.get("variants")
            ablations = vs == "ablations"
            variants = None if ablations else ",".join(map(str, vs or []))
        if seeds is None and "seeds" in spec:
            seeds = ",".join(str(s) for s in spec["seeds"])
        if preset is None and "preset" in spec:
            preset = str(spec["preset"])
        overrides = [*map(str, spec.get("overrides", [])), *overrides]
        dataset = dataset or spec.get("dataset")

    if all_categories and categories:
        raise MasfError("give --all-categories or --categories, not both")
    if ablations and variants:
        raise MasfError("give --ablations or --variants, not both")
    opts = SweepOptions(
        categories=_csv(categories), all_categories=all_categories, variants=_csv(variants), ablations=ablations,
        seeds=_seeds(seeds or "0"), preset=preset or "demo", overrides=list(overrides), data_roots=list(data_root),
        dataset=dataset or "", datasets=datasets, suite=suite or "", skip_missing=skip_missing,
        address=address, tracking_uri=tracking_uri, experiment=experiment, storage=str(storage) if storage else None,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent,
        max_failures=max_failures, resume=resume, reuse_workers=reuse_workers, share=share, feature_cache_gb=feature_cache_gb,
    )
    console = Console(highlight=False)
    summary = run_sweep(opts, console)
    console.print(
        f"sweep {summary.name}: {len(summary.done)} done, {len(summary.skipped)} already done, {len(summary.failed)} failed; "
        f"wall {summary.wall_seconds:.1f} s, trials {summary.trial_seconds:.1f} s, {summary.concurrency} at once, "
        f"efficiency {summary.efficiency:.2f}"
        + (f"; first trial {summary.startup['first_trial']:.1f} s after the command" if "first_trial" in summary.startup else "")
    )
    for key, error in sorted(summary.failed.items()):
        console.print(f"[red]failed[/] {key}: {error}", markup=True, soft_wrap=True)
    if summary.unlogged_events:
        console.print(f"[yellow]{summary.unlogged_events} MLflow events could not be logged; they wait in "
                      f"{summary.storage}/tracking-spool.jsonl and are logged by the next --resume[/]", markup=True)
    if summary.done or summary.skipped:
        from masf.cli.leaderboard import sweep_tables

        try:
            sweep_tables(summary.tracking_uri, summary.experiment, summary.name, summary.variants, frame=summary.frame)
        except MasfError as exc:  # the sweep's results stand; only the tables could not be made
            console.print(f"[yellow]tables not shown: {exc}[/]", markup=True)
    console.print(f"results: masf-bench leaderboard --experiment {summary.experiment}"
                  + (f" --tracking-uri {summary.tracking_uri}" if opts.tracking_uri else "") + "   browse: masf-bench ui")
    if summary.failed:
        raise typer.Exit(2)


def ui(
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default: ./mlflow.db)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(5000, "--port", help="Port to serve on."),
    experiment: str = typer.Option("masf-bench", "--experiment", "-e", envvar="MASF_EXPERIMENT", help="Experiment whose runs table the printed link opens."),
) -> None:
    """Serve the MLflow UI on the default store, bound to 127.0.0.1 unless told otherwise; SIGINT, SIGTERM or SIGHUP stops it."""
    from masf.runner.tracking import default_tracking_uri, serve_ui, ui_command, ui_url

    store = tracking_uri or default_tracking_uri()
    Console(highlight=False).print(f"MLflow UI on {ui_url(store, host, port, experiment)}  (store {store}); Ctrl+C stops it", soft_wrap=True)
    raise typer.Exit(serve_ui(ui_command(store, host, port)))
