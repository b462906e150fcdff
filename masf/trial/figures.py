"""Figures a person looks at after a trial: heatmap grid, ROC, score histograms, training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def heatmap_grid(
    images: np.ndarray, masks: np.ndarray, maps: np.ndarray, scale_maps: Sequence[np.ndarray], path: Path, title: str
) -> Path:
    """Rows of input, ground truth, heatmap, overlay and per-scale maps (like the paper's Figure 7).

    images (N, H, W, 3) uint8; masks, maps (N, H, W); scale_maps L x (N, H, W).
    """
    n = len(images)
    cols = 4 + len(scale_maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.9 * n), squeeze=False)
    vmin, vmax = float(np.min(maps)), float(np.max(maps))  # one colour scale for every row
    heads = ["input", "ground truth", "anomaly map", "overlay"] + [f"scale {i}" for i in range(len(scale_maps))]
    for r in range(n):
        panels = [
            (images[r], {}),
            (masks[r], {"cmap": "gray", "vmin": 0, "vmax": 1}),
            (maps[r], {"cmap": "jet", "vmin": vmin, "vmax": vmax}),
        ]
        for c, (img, kw) in enumerate(panels):
            axes[r, c].imshow(img, **kw)
        axes[r, 3].imshow(images[r])
        axes[r, 3].imshow(maps[r], cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax)
        for i, sm in enumerate(scale_maps):
            axes[r, 4 + i].imshow(sm[r], cmap="jet")
        for c in range(cols):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(heads[c], fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def roc_figure(scores: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {roc_auc_score(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    return _save(fig, path)


def score_histogram(scores: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.histogram_bin_edges(scores, bins=min(40, max(10, len(scores) // 3)))
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"normal (n={int((labels == 0).sum())})", color="tab:blue")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"anomalous (n={int((labels == 1).sum())})", color="tab:red")
    ax.set(xlabel="image score", ylabel="images", title=title)
    ax.legend()
    return _save(fig, path)


def training_curves(history: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Loss, learning rate, skipped batches and evaluation metrics per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    trained = [h for h in history if h.get("batches")]
    epochs = [h["epoch"] for h in trained]
    if trained:
        axes[0].plot(epochs, [h["loss"] for h in trained], "o-", label="total")
        for key in sorted(k for k in trained[0] if k.startswith("loss/")):
            axes[0].plot(epochs, [h.get(key, np.nan) for h in trained], ".--", label=key.split("/")[1])
        ax2 = axes[1]
        ax2.plot(epochs, [h["lr"] for h in trained], "o-", color="tab:green", label="lr")
        ax2.set_ylabel("learning rate")
        ax3 = ax2.twinx()
        ax3.bar(epochs, [h["skipped_batches"] for h in trained], alpha=0.3, color="tab:red", label="skipped batches")
        ax3.set_ylabel("skipped batches")
    axes[0].set(xlabel="epoch", ylabel="loss", title="training loss")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="epoch", title="lr and skipped batches")
    evaluated = [h for h in history if "image_auroc" in h]
    for key in ("image_auroc", "pixel_auroc", "pro"):
        axes[2].plot([h["epoch"] for h in evaluated], [h[key] for h in evaluated], "o-", label=key)
    axes[2].set(xlabel="epoch", ylabel="metric (test split)", title="evaluation", ylim=(0, 1.02))
    axes[2].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
