"""Figures of ``neuromask sanity``: similarity along the randomisation cascade, and the
maps of every method from the trained and the randomised CNNs."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neuromask.figures.plotting import plt, quiet_stat_map, save_figure
from neuromask.io.grid import Grid
from neuromask.io.template import gm_template


def _model_order(cascade: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(cascade["model"]))


def plot_cascade(cascade: pd.DataFrame, table: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """ROI similarity and Spearman correlation with the trained CNN's map, per method,
    as layers are re-initialised from the top; dashed: the method's inter-subject
    similarity (below it, a method passes)."""
    order = _model_order(cascade)
    x = {model: i for i, model in enumerate(order)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    colours = plt.get_cmap("tab10")
    for i, (method, rows) in enumerate(cascade.groupby("method", sort=False)):
        colour = colours(i % 10)
        xs = [x[m] for m in rows["model"]]
        for ax, column in zip(axes, ("roi_similarity", "spearman"), strict=True):
            ax.plot(xs, rows[column], marker="o", color=colour, label=method)
        inter = table.set_index("method").loc[method, "inter_subject_similarity"]
        axes[0].axhline(inter, color=colour, linestyle="--", linewidth=0.8)
    labels = [m.replace("cascade-", "top ") if m.startswith("cascade") else m for m in order]
    for ax, name in zip(axes, ("ROI cosine similarity", "Spearman of ROI values"), strict=True):
        ax.set_xticks(range(len(order)), labels, rotation=45, ha="right")
        ax.set_ylabel(name)
        ax.set_xlabel("layers re-initialised (from the top), or shuffled labels")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylim(-1.05, 1.05)
    axes[0].set_title("similarity to the trained CNN's map (dashed: inter-subject)")
    axes[1].set_title("rank correlation with the trained CNN's map")
    axes[1].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_maps(
    maps: dict[tuple[str, str], np.ndarray],
    models: list[str],
    methods: list[str],
    grid: Grid,
    out: str | os.PathLike[str],
) -> Path:
    """One coronal slice per (method, model): rows are methods, columns models. Every
    panel is cut at the same plane, through the peak of the first method's map from the
    trained CNN; each map is scaled to its own 99.9th percentile."""
    background = nib.Nifti1Image(np.asarray(gm_template(grid), dtype=np.float32), grid.affine)
    fig, axes = plt.subplots(
        len(methods),
        len(models),
        figsize=(2.4 * len(models) + 1.6, 2.2 * len(methods)),
        squeeze=False,
    )
    peak = np.unravel_index(int(np.argmax(maps[models[0], methods[0]])), grid.shape)
    y = float((grid.affine @ np.r_[np.asarray(peak, dtype=float), 1.0])[1])
    for row, method in enumerate(methods):
        for col, model in enumerate(models):
            values = np.asarray(maps[model, method], dtype=np.float32)
            scale = float(np.percentile(values[values > 0], 99.9)) if np.any(values > 0) else 1.0
            img = nib.Nifti1Image(np.clip(values / scale, 0, 1), grid.affine)
            quiet_stat_map(
                img,
                bg_img=background,
                threshold=0.1,
                vmax=1.0,
                cmap="hot",
                black_bg=True,
                annotate=row == 0 and col == 0,
                draw_cross=False,
                display_mode="y",
                cut_coords=[y],
                axes=axes[row, col],
                colorbar=False,
            )
            if row == 0:
                axes[row, col].set_title(model, fontsize=10)
        axes[row, 0].text(
            -0.08,
            0.5,
            method,
            transform=axes[row, 0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=10,
        )
    fig.suptitle(f"relevance maps (1 − m for masks, |a| otherwise), coronal slice y = {y:.0f} mm")
    return save_figure(fig, out)
