"""The quality-check figures (the paper's Figure 2): passed and rejected maps."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from neuromask.figures.plotting import plt, save_figure

#: Cut through the medial temporal lobe, low enough to show tissue below the brain.
CUT_COORDS = (-25.0, -20.0, -15.0)


def plot_qc_examples(
    passed: Path | None,
    rejected: Path | None,
    out: str | os.PathLike[str],
    *,
    rejected_reason: str = "",
) -> Path:
    """Orthogonal views of one passed and one rejected GM map, one row each."""
    panels = []
    if passed is not None:
        panels.append((passed, f"passed: {_session_name(passed)}"))
    if rejected is not None:
        reason = f" ({rejected_reason})" if rejected_reason else ""
        panels.append((rejected, f"rejected: {_session_name(rejected)}{reason}"))
    return plot_qc_panels(panels, out)


def _session_name(path: Path) -> str:
    return path.name.split("_T1w")[0]


def plot_qc_panels(panels: list[tuple[Path, str]], out: str | os.PathLike[str]) -> Path:
    """Orthogonal views of GM maps, one row per (map, title)."""
    from nilearn import plotting

    if not panels:
        raise ValueError("plot_qc_panels: nothing to plot")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (path, title) in zip(axes, panels, strict=True):
        img = cast(nib.Nifti1Image, nib.load(path))
        if min(img.shape[:3]) < 2:  # nothing to cut through
            ax.set_axis_off()
            ax.set_title(title)
            ax.text(0.5, 0.5, f"{img.shape[:3]} voxels: too small to draw", ha="center")
            continue
        with warnings.catch_warnings():  # a map without contrast is drawn at its centre
            warnings.filterwarnings("ignore", message="Could not determine cut coords")
            plotting.plot_img(
                img,
                display_mode="ortho",
                cut_coords=CUT_COORDS if _covers(img, CUT_COORDS) else None,
                axes=ax,
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                colorbar=True,
                title=title,
                black_bg=True,
            )
    return save_figure(fig, out)


def _covers(img: nib.Nifti1Image, point: tuple[float, float, float]) -> bool:
    """Whether the image's field of view holds ``point`` (mm); a map on another grid is
    cut through its own centre instead."""
    inverse = np.linalg.inv(img.affine)
    voxel = inverse @ np.array([*point, 1.0])
    return bool(np.all(voxel[:3] >= 0) and np.all(voxel[:3] <= np.array(img.shape[:3]) - 1))
