"""ROI-based similarity of masks: the cosine similarity of their ROI-density vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from neuromask.io.atlas import Atlas
from neuromask.metrics.roi import roi_densities, roi_means


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


def roi_vector(relevance: np.ndarray, atlas: Atlas) -> np.ndarray:
    """Mean relevance per ROI; ROIs without a voxel on the grid count as 0."""
    return np.nan_to_num(roi_means(relevance, atlas).to_numpy(), nan=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; a zero vector (an empty map) is similar to nothing (0)."""
    return float(cosine_matrix(np.stack([a, b]))[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either vector is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def inter_subject_similarity(
    vectors: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float] | None = None
) -> float:
    """Mean similarity (``metric``, default cosine) over all pairs of per-image ROI
    vectors; pairs where it is undefined (NaN) are left out."""
    metric = metric or cosine
    n = len(vectors)
    pairs = [metric(vectors[i], vectors[j]) for i in range(n) for j in range(i + 1, n)]
    pairs = [p for p in pairs if not np.isnan(p)]
    return float(np.mean(pairs)) if pairs else float("nan")
