"""Where synthetic AD subjects lose gray matter: the atrophied ROIs and their pattern."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from neuromask.errors import ParameterError
from neuromask.io.atlas import Atlas, roi_stem

if TYPE_CHECKING:
    from neuromask.data.synthetic import SynthConfig


def resolve_atrophy_rois(config: SynthConfig, atlas: Atlas) -> list[str]:
    """The ROI names (with hemisphere) that AD subjects lose GM in."""
    rois = list(config.atrophy_rois)
    if len(rois) == 1 and rois[0].startswith("random:"):
        try:
            k = int(rois[0].split(":", 1)[1])
        except ValueError:
            raise ParameterError(
                f"atrophy_rois: 'random:K' needs an integer K, got {rois[0]!r}"
            ) from None
        stems = sorted({roi_stem(name) for name in atlas.names})
        if not 1 <= k <= len(stems):
            raise ParameterError(
                f"atrophy_rois: K in 'random:K' must be in 1..{len(stems)}, got {k}"
            )
        rng = np.random.default_rng([config.seed, config.profile.seed_code, 7])
        rois = [stems[i] for i in sorted(rng.choice(len(stems), size=k, replace=False))]
    return atlas.resolve(rois)


def atrophy_pattern(atlas: Atlas, roi_names: list[str]) -> np.ndarray:
    """1 inside the ROIs, a smooth fall-off (sigma 3 mm) outside them; float32."""
    inside = atlas.mask(roi_names).astype(np.float32)
    sigma = 3.0 / np.asarray(atlas.grid.voxel_size)
    return np.maximum(inside, ndimage.gaussian_filter(inside, sigma=sigma)).astype(np.float32)
