"""Does a relevance map show regions or scattered voxels?

``coherence`` takes the most relevant voxels of the brain, the top ``fraction`` of them
(only voxels of non-zero relevance count: a mask that deletes less keeps fewer), and
splits them into connected components (26-connectivity: voxels touching by a face, an
edge or a corner). Its value is the share of those voxels that lie in the ``n`` largest
components: 1 when the map shows at most ``n`` regions, near 0 when it is speckle.
``components`` counts the components; ``voxels`` is how many voxels were taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from neuromask.errors import ParameterError

#: The share of brain voxels taken, and how many components count as "a few".
DEFAULT_FRACTION = 0.05
DEFAULT_COMPONENTS = 5


@dataclass(frozen=True)
class Coherence:
    coherence: float
    components: int
    voxels: int


def coherence(
    relevance: np.ndarray,
    brain: np.ndarray,
    *,
    fraction: float = DEFAULT_FRACTION,
    n: int = DEFAULT_COMPONENTS,
) -> Coherence:
    """The coherence of a relevance map (X, Y, Z) within ``brain`` (see the module's text);
    NaN when no brain voxel has any relevance."""
    relevance = np.asarray(relevance, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    if relevance.shape != brain.shape or relevance.ndim != 3:
        raise ParameterError(
            f"coherence: relevance {relevance.shape} and brain {brain.shape} must be one 3D grid"
        )
    if not 0 < fraction <= 1:
        raise ParameterError(f"coherence: fraction must be in (0, 1], got {fraction}")
    if n < 1:
        raise ParameterError(f"coherence: n must be at least 1, got {n}")
    inside = np.flatnonzero(brain.ravel() & (relevance.ravel() > 0))
    if inside.size == 0:
        return Coherence(float("nan"), 0, 0)
    take = min(inside.size, max(1, int(round(fraction * int(brain.sum())))))
    values = relevance.ravel()[inside]
    top = inside[np.argsort(-values, kind="stable")[:take]]
    selected = np.zeros(relevance.size, dtype=bool)
    selected[top] = True
    labels, count = ndimage.label(selected.reshape(relevance.shape), structure=np.ones((3, 3, 3)))
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    return Coherence(float(sizes[:n].sum() / take), int(count), int(take))
