"""Figures of a study's tables: CNN training curves, mask-optimisation losses with each
term, similarity matrices as heatmaps, and ROI densities of the top ROIs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from neuromask.figures.plotting import plt, save_figure


def plot_training_curves(
    histories: Mapping[str, pd.DataFrame], out: str | os.PathLike[str]
) -> Path:
    """Loss (training solid, validation dashed) and validation balanced accuracy per
    epoch, one colour per run (a run's ``training.tsv``)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    colours = plt.get_cmap("tab10")
    for i, (label, history) in enumerate(histories.items()):
        c = colours(i % 10)
        axes[0].plot(history["epoch"], history["train_loss"], color=c, label=label)
        axes[0].plot(history["epoch"], history["validation_loss"], color=c, linestyle="--")
        axes[1].plot(
            history["epoch"], history["validation_balanced_accuracy"], color=c, label=label
        )
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss (dashed: validation)")
    axes[1].set(xlabel="epoch", ylabel="balanced accuracy", title="validation balanced accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[1].axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[1].legend(fontsize=8, ncol=2, loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out)


_TERMS = (
    ("total", "total loss"),
    ("size", "size term  λ1 Σ|1 − m|^β1"),
    ("smoothness", "smoothness term  λ2 Σ‖∇m‖^β2"),
    ("score", "CNN score f(masked image)"),
)


def plot_mask_history(history: pd.DataFrame, out: str | os.PathLike[str], title: str = "") -> Path:
    """The masking loss and each of its terms per epoch (training solid, validation
    dashed), P(AD) of the masked validation images and the share of voxels deleted."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    flat = axes.ravel()
    for ax, (term, name) in zip(flat, _TERMS, strict=False):
        for prefix, style in (("train", "-"), ("validation", "o--")):
            column = f"{prefix}_{term}"
            if column in history:
                # judged epochs only (mask setting validate_every)
                rows = history[["epoch", column]].dropna()
                ax.plot(rows["epoch"], rows[column], style, label=prefix, markersize=3)
        ax.set(title=name, xlabel="epoch")
        ax.legend(fontsize=8)
    if "validation_probability" in history:
        judged = history[["epoch", "validation_probability"]].dropna()
        flat[4].semilogy(
            judged["epoch"], judged["validation_probability"].clip(lower=1e-30), "o-", markersize=3
        )
        flat[4].set(title="mean P(AD), masked validation images", xlabel="epoch")
    else:
        flat[4].set_visible(False)
    if "fraction_below_keep" in history:
        judged = history[["epoch", "fraction_below_keep"]].dropna()
        flat[5].plot(judged["epoch"], judged["fraction_below_keep"], "o-", markersize=3)
        flat[5].set(title="share of voxels with m < 0.95", xlabel="epoch")
    else:
        flat[5].set_visible(False)
    for ax in flat:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_similarity_heatmap(
    table: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "viridis",
    fmt: str = "{:.2f}",
) -> Path:
    """A square similarity table (first column: labels) as an annotated heatmap."""
    labels = table.iloc[:, 0].astype(str).tolist()
    matrix = table.iloc[:, 1:].to_numpy(dtype=float)
    size = max(3.5, 0.7 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    mid = (vmin + vmax) / 2
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            fmt.format(value),
            ha="center",
            va="center",
            color="black" if value > mid else "white",
            fontsize=8,
        )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_roi_bars(
    densities: pd.Series,
    out: str | os.PathLike[str],
    *,
    truth: Iterable[str] = (),
    k: int = 10,
    title: str = "",
) -> Path:
    """The ``k`` densest ROIs (mean of 1 − m, or of a relevance map) as horizontal bars;
    ROIs of the ground truth in red, others in grey."""
    truth = set(truth)
    top = densities.dropna().sort_values(ascending=False, kind="stable").head(k)[::-1]
    colours = ["#c0392b" if name in truth else "#7f8c8d" for name in top.index]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1.2))
    ax.barh(range(len(top)), top.to_numpy(), color=colours)
    ax.set_yticks(range(len(top)), top.index)
    ax.set_xlabel("ROI density (mean of 1 − m)")
    if truth:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(color="#c0392b", label="atrophied (ground truth)"),
                Patch(color="#7f8c8d", label="not atrophied"),
            ],
            fontsize=8,
            loc="lower right",
        )
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return save_figure(fig, out)
