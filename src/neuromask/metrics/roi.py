"""ROI densities of a mask: the mean of 1 - m over each atlas ROI's voxels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuromask.errors import GridMismatchError
from neuromask.io.atlas import Atlas


def roi_densities(mask: np.ndarray, atlas: Atlas) -> pd.Series:
    """Density of every ROI of ``atlas`` (indexed by ROI name, in atlas order).

    ROIs without a voxel on the grid get NaN.

    >>> import numpy as np, pandas as pd
    >>> from neuromask.io.grid import Grid
    >>> labels = np.array([1, 1, 2, 0]).reshape(4, 1, 1)
    >>> atlas = Atlas("toy", labels, pd.DataFrame({"roi_value": [1, 2], "roi_name": ["a", "b"]}),
    ...               Grid((4, 1, 1), np.eye(4)))
    >>> roi_densities(np.array([0.0, 0.5, 1.0, 0.0]).reshape(4, 1, 1), atlas).tolist()
    [0.75, 0.0]
    """
    mask = np.asarray(mask, dtype=np.float64)
    return roi_means(1.0 - mask, atlas).rename("density")


def roi_means(values: np.ndarray, atlas: Atlas) -> pd.Series:
    """Mean of ``values`` over every ROI of ``atlas`` (indexed by ROI name, in atlas
    order); ROIs without a voxel on the grid get NaN."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != atlas.labels.shape:
        raise GridMismatchError(
            f"map shape {values.shape} differs from the atlas grid {atlas.labels.shape}"
        )
    flat = values.ravel()
    labels = atlas.labels.ravel()
    values = atlas.values
    size = int(max(labels.max(), values.max())) + 1
    sums = np.bincount(labels, weights=flat, minlength=size)
    counts = np.bincount(labels, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(counts[values] > 0, sums[values] / np.maximum(counts[values], 1), np.nan)
    return pd.Series(density, index=atlas.names, name="mean")


def top_rois(mask: np.ndarray, atlas: Atlas, k: int = 5) -> pd.DataFrame:
    """The ``k`` ROIs of highest density, with their densities."""
    densities = roi_densities(mask, atlas).dropna().sort_values(ascending=False, kind="stable")
    top = densities.head(k)
    return pd.DataFrame(
        {"rank": np.arange(1, len(top) + 1), "roi_name": top.index, "density": top.to_numpy()}
    )
