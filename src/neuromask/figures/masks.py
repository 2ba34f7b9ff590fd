"""Masks over the GM template: 1 - m (what the mask deletes) in colour, coronal first."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from neuromask.figures.plotting import plt, quiet_stat_map, save_figure
from neuromask.io.grid import Grid
from neuromask.io.template import gm_template

CORONAL_CUTS = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0)
#: Coronal cuts from the occipital to the frontal lobe, for masks side by side.
SPREAD_CUTS = (-80.0, -54.0, -28.0, -2.0, 24.0, 50.0)


def plot_mask(
    mask: np.ndarray,
    grid: Grid,
    out: str | os.PathLike[str],
    *,
    title: str = "",
    cut_coords: tuple[float, ...] = CORONAL_CUTS,
    threshold: float = 0.05,
) -> Path:
    """Coronal slices (top row) and orthogonal views (bottom row) of 1 - m over the ICBM152
    GM template resampled to the mask's grid."""

    deletion = nib.Nifti1Image((1.0 - np.asarray(mask, dtype=np.float32)), grid.affine)
    background = nib.Nifti1Image(np.asarray(gm_template(grid), dtype=np.float32), grid.affine)
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.4))
    common = {
        "bg_img": background,
        "threshold": threshold,
        "vmax": 1.0,
        "cmap": "hot",
        "black_bg": True,
        "annotate": True,
        "draw_cross": False,
    }
    quiet_stat_map(
        deletion,
        display_mode="y",
        cut_coords=list(cut_coords),
        axes=axes[0],
        colorbar=True,
        title=title or None,
        **common,
    )
    peak = np.unravel_index(int(np.argmax(deletion.get_fdata())), grid.shape)
    world = grid.affine @ np.r_[np.asarray(peak, dtype=float), 1.0]
    quiet_stat_map(
        deletion,
        display_mode="ortho",
        cut_coords=tuple(world[:3]),
        axes=axes[1],
        colorbar=False,
        **common,
    )
    return save_figure(fig, out)


def plot_mask_rows(
    masks: list[tuple[str, np.ndarray]],
    grid: Grid,
    out: str | os.PathLike[str],
    *,
    title: str = "",
    cut_coords: tuple[float, ...] = SPREAD_CUTS,
    threshold: float = 0.05,
) -> Path:
    """Masks side by side, one row of coronal slices per (label, mask), all on one colour
    scale (the paper's Figures 3-6)."""
    background = nib.Nifti1Image(np.asarray(gm_template(grid), dtype=np.float32), grid.affine)
    fig, axes = plt.subplots(len(masks), 1, figsize=(11, 2.3 * len(masks)), squeeze=False)
    for row, (label, mask) in enumerate(masks):
        deletion = nib.Nifti1Image(1.0 - np.asarray(mask, dtype=np.float32), grid.affine)
        quiet_stat_map(
            deletion,
            bg_img=background,
            threshold=threshold,
            vmax=1.0,
            cmap="hot",
            black_bg=True,
            annotate=row == 0,
            draw_cross=False,
            display_mode="y",
            cut_coords=list(cut_coords),
            axes=axes[row, 0],
            colorbar=row == 0,
            title=label,
        )
    if title:
        fig.suptitle(title, y=1.0)
    return save_figure(fig, out)
