"""The quality-check figure (the paper's Figure 2): a passed and a rejected map."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib

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
    from nilearn import plotting

    panels = [(p, t) for p, t in ((passed, "passed"), (rejected, "rejected")) if p is not None]
    if not panels:
        raise ValueError("plot_qc_examples: nothing to plot")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (path, status) in zip(axes, panels, strict=True):
        name = path.name.split("_T1w")[0]
        title = f"{status}: {name}"
        if status == "rejected" and rejected_reason:
            title += f" ({rejected_reason})"
        plotting.plot_img(
            nib.load(path),
            display_mode="ortho",
            cut_coords=CUT_COORDS,
            axes=ax,
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            colorbar=True,
            title=title,
            black_bg=True,
        )
    return save_figure(fig, out)
