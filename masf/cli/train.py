"""``masf-bench train``: one (category, variant, seed) trial with a progress bar and a metrics table."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from masf.config import Config, build_config

PRESET_HELP = "Config preset: paper, cpu, demo, smoke, or a path to a YAML file."
SET_HELP = "Override a config value, e.g. --set train.epochs=3 (repeatable)."


def make_config(preset: str, overrides: list[str], **fields: Any) -> Config:
    """Preset <- explicit CLI fields (dotted keys, None = not given) <- --set overrides."""
    given = {k: v for k, v in fields.items() if v is not None}
    variant = given.pop("variant", None)
    flat = [f"{k}={v}" for k, v in given.items()]
    return build_config(preset, flat + list(overrides or []), variant=variant)


def metrics_table(row: dict[str, Any], title: str) -> Table:
    """Test metrics of the three selections, and the final epoch's validation metrics."""
    has_val = "best_on_val/image_auroc" in row
    has_student = "student_only/image_auroc" in row
    has_best_on_test = "best_on_test/image_auroc" in row
    columns = (["last"] + (["best_on_val"] if has_val else []) + (["best_on_test"] if has_best_on_test else []) + (["val"] if has_val else [])
               + (["student_only"] if has_student else []))
    notes = ["last: final epoch (headline)"]
    if has_val:
        notes.append(f"best_on_val: epoch {row['best_val_epoch']}, chosen on the validation split")
    notes.append(f"best_on_test: epoch {row['best_epoch']}, chosen on the test split (optimistic)" if has_best_on_test else
                 "best_on_test: not available (eval.test_split=selected scores the test split only where last and best_on_val need it)")
    if has_val:
        notes.append("val: the validation split (held-out normals + pseudo-anomalies), final epoch")
    if has_student:
        notes.append("student_only: the student's cosine maps alone (no TTSA, same fusion over scales), final epoch, test split")
    notes.append("*_f1_max: the best threshold of the split itself; *_f1_at_val_threshold: the threshold fixed on validation; "
                 "pixel_f1_at_normal_threshold (SegF1): mean + 3 std of the validation normals' pixel scores")
    table = Table(title=title, title_justify="left", caption="\n".join(notes), caption_justify="left")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    from masf.metrics import SELECTION_METRICS

    for key in SELECTION_METRICS:
        values = [row.get(f"{p}/{key}") for p in columns]
        table.add_row(key, *(f"{v:.4f}" if isinstance(v, float) and v == v else "—" for v in values))
    return table


def train(
    data_root: Optional[Path] = typer.Option(None, "--data-root", envvar="MVTEC_AD_ROOT", help="Dataset root in its published layout (env: MVTEC_AD_ROOT)."),
    category: str = typer.Option(..., "--category", "-c", help="Category folder under the data root."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="The dataset the root holds (mvtec_ad, mpdd, mvtec_3d, visa, mvtec_ad2, mvtec_loco, btad); it names the layout to read (default: recognised from the folder)."),
    variant: str = typer.Option("full", "--variant", "-v", help="Ablation variant (see `masf-bench variants`)."),
    preset: str = typer.Option("cpu", "--preset", "-p", help=PRESET_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", "-s", help="Random seed (default: the preset's)."),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the trial (result.json, figures, checkpoint)."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from out/checkpoint.pt when it exists and belongs to this configuration (another configuration's checkpoint stops the trial); --restart discards it."),
    feature_cache: Optional[Path] = typer.Option(None, "--feature-cache", help="Folder that keeps the teacher's features for later trials (default: in memory, for this trial only; on CUDA only with --set train.feature_cache=on)."),
) -> None:
    """Train and evaluate one trial; print its metrics (last epoch, validation-selected and the paper's test-selected epoch)."""
    from masf.trial import run_trial  # torch and timm load here, not for --help

    cfg = make_config(
        preset,
        overrides,
        variant=variant,
        **{"data.root": str(data_root.resolve()) if data_root else None, "data.category": category, "train.seed": seed,
           "data.dataset": dataset},
    )
    console = Console(highlight=False)
    if cfg.data.root:
        from masf.data.layouts import resolve_layout

        console.print(resolve_layout(Path(cfg.data.root), cfg.data.dataset, cfg.data.layout)[1], soft_wrap=True)
    reading = f"reading {cfg.model.reading}, " if cfg.model.method == "masf" else ""
    console.print(f"[bold]{cfg.data.category}[/] / {cfg.variant} / seed {cfg.train.seed}  preset {cfg.preset}, {reading}"
                  f"teacher {cfg.model.teacher.name} ({cfg.model.teacher.weights}), {cfg.data.image_size} px -> {out}")
    interactive = sys.stdout.isatty() and not os.environ.get("CI")
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not interactive,
    )

    with progress:
        epochs = progress.add_task("epochs", total=max(cfg.train.epochs, 1), info="")
        batches = progress.add_task("batches", total=1, info="")

        def on_batch(done: int, total: int) -> None:
            progress.update(batches, completed=done, total=total)

        def on_epoch(record: dict[str, Any]) -> None:
            parts = [f"loss {record['loss']:.4f}"] if record.get("batches") else []
            if record.get("skipped_batches"):
                parts.append(f"skipped {record['skipped_batches']}")
            if "image_auroc" in record:
                parts.append(f"img {record['image_auroc']:.3f} px {record['pixel_auroc']:.3f} pro {record['pro']:.3f}")
            info = "  ".join(parts)
            progress.update(epochs, completed=max(record["epoch"], 1 if record.get("final") else 0), info=info)
            if not interactive:
                console.print(f"epoch {record['epoch']}: {info}")

        from masf.method.feature_cache import FeatureCache

        cache = FeatureCache(root=feature_cache.expanduser().resolve() if feature_cache else None)
        row = run_trial(cfg, out, on_epoch=on_epoch, on_batch=on_batch, resume=resume, feature_cache=cache)
    console.print(metrics_table(row, f"{row['category']} / {row['variant']} / seed {row['seed']}"))
    ms, ms_ttsa = row["infer_ms_per_image"], row["infer_ms_per_image_ttsa"]
    timing = f"inference {ms:.1f} ms/img ({ms_ttsa:.1f} with TTSA)" if ms is not None else "inference not timed"
    bank = f"  bank build {row['bank_seconds']:.1f} s" if "bank_seconds" in row else ""
    console.print(
        f"optimiser steps {row['optimizer_steps']}, skipped batches {row['skipped_batches']}/{row['total_batches']}, steps {row['skipped_steps']}  train {row['train_seconds']:.1f} s{bank}  "
        f"{timing}  device {row['device']}  trainable parameters {row.get('trainable_parameters', 0):,}"
        + (f"  peak RSS {row['peak_rss_mb']:.0f} MB" if row.get("peak_rss_mb") else "")
    )
