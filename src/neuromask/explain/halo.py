"""The halo: a group mask's kept voxels ranked by their nearness to what it deletes.

A group mask deletes a small share of the brain (``area``, 2 % by default) and leaves the
rest at or near m = 1. Scores that rank the whole brain (voxel AUC, the insertion and
deletion curves) then order the kept voxels by what is left there: the coarse stage's
trace (:data:`~neuromask.explain.refine.COARSE_TRACE`) and the optimiser's small
movements. The halo ranks them instead by their nearness to the deleted regions::

    m' = m * (1 - halo_depth * G(1 - m))

with ``G`` a Gaussian of ``halo_sigma`` voxels, inside the brain. Where the mask deletes
(m near 0) nothing changes; where it keeps a voxel, the voxel loses at most
``halo_depth`` of its value, the more the nearer it lies to a deleted region. With the
default depth (1 %) the masked image barely changes there, as with the coarse trace.

The atrophy a CNN reads lies in regions, and a mask sized by its area covers part of
them: on the round-9 suite the default mask's deleted voxels lay 83 % in the truth but
covered 26 to 43 % of it. Ranking the rest by nearness is a spatial prior, the same one
the smoothness term λ2 puts on the mask itself; it is measured, with the tuning cohorts
that chose it, in docs/mask_levers.md (round 10).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def with_halo(
    masks: torch.Tensor, sigma: float, depth: float, brain: torch.Tensor | None = None
) -> torch.Tensor:
    """``masks`` (N, 1, X, Y, Z) with a halo of ``sigma`` voxels and ``depth`` (see the
    module), only inside ``brain`` (X, Y, Z, bool) when given. ``depth`` = 0 or
    ``sigma`` = 0 returns ``masks`` unchanged."""
    if depth == 0 or sigma == 0:
        return masks
    relevance = (1.0 - masks.detach()).double().cpu().numpy()
    near = np.empty_like(relevance)
    for i in range(relevance.shape[0]):
        near[i, 0] = ndimage.gaussian_filter(relevance[i, 0], sigma, mode="constant")
    factor = 1.0 - depth * torch.from_numpy(near).to(masks.device, masks.dtype)
    if brain is not None:
        inside = brain.to(masks.device).reshape(1, 1, *masks.shape[2:])
        factor = torch.where(inside, factor, torch.ones_like(factor))
    return (masks * factor).clamp(0.0, 1.0)
