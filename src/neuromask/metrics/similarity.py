"""ROI-based similarity of masks: the cosine similarity of their ROI-density vectors."""

from __future__ import annotations

import numpy as np

from neuromask.io.atlas import Atlas
from neuromask.metrics.roi import roi_densities


def roi_vectors(masks: list[np.ndarray] | np.ndarray, atlas: Atlas) -> np.ndarray:
    """(n_masks, n_rois) densities; ROIs without voxels on the grid count as 0."""
    return np.stack([np.nan_to_num(roi_densities(m, atlas).to_numpy(), nan=0.0) for m in masks])


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows; a zero vector is similar to nothing (0).

    >>> cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0]])).round(3).tolist()
    [[1.0, 0.707], [0.707, 1.0]]
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 0)
    return unit @ unit.T
