"""Where synthetic AD subjects lose gray matter: the atrophied ROIs and their pattern."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from neuromask.errors import ParameterError
from neuromask.io.atlas import Atlas, roi_stem

if TYPE_CHECKING:
    from neuromask.data.synth_config import SynthConfig


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


#: Where a blob's pattern counts as truly atrophied, as a share of its peak.
BLOB_CORE = 0.5
#: A blob cohort's ROI counts as atrophied when this share of its voxels lies in the
#: blobs' core (the voxel truth). A perfect map, ranked by ROI means, puts exactly these
#: ROIs first.
ROI_CORE_SHARE = 0.15


def blob_patterns(
    config: SynthConfig, atlas: Atlas, template: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``config.atrophy_blobs`` smooth blobs that ignore ROI boundaries: Gaussian bumps
    (SD ``blob_radius_mm``) centred on gray matter (template > 0.5, inside the atlas),
    drawn from the seed. Returns the pattern (the maximum of the bumps, peak 1) and one
    pattern per blob (for heterogeneous subjects)."""
    grid = atlas.grid
    candidates = np.flatnonzero(((template > 0.5) & (atlas.labels > 0)).ravel())
    if candidates.size < config.atrophy_blobs:
        raise ParameterError(
            f"atrophy_blobs: {config.atrophy_blobs} blobs asked for, but the grid has only "
            f"{candidates.size} gray-matter voxels"
        )
    seed = config.seed if config.blob_seed is None else config.blob_seed
    rng = np.random.default_rng([seed, 8])  # not the cohort's: two cohorts may share it
    centres = rng.choice(candidates, size=config.atrophy_blobs, replace=False)
    axes = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    sizes = np.asarray(grid.voxel_size)
    blobs = []
    for centre in centres:
        c = np.unravel_index(int(centre), grid.shape)
        d2 = sum(((a - ci) * s) ** 2 for a, ci, s in zip(axes, c, sizes, strict=True))
        blobs.append(np.exp(-d2 / (2 * config.blob_radius_mm**2)).astype(np.float32))
    return np.max(blobs, axis=0).astype(np.float32), blobs


def rois_of_pattern(pattern: np.ndarray, atlas: Atlas) -> list[str]:
    """The ROIs a blob pattern atrophies: those with at least ``ROI_CORE_SHARE`` of their
    voxels in its core (``truth_voxels``), in decreasing share (at least the ROI of
    highest share)."""
    labels = atlas.labels.ravel()
    core = truth_voxels(pattern).ravel()
    inside = np.bincount(labels, weights=core, minlength=int(labels.max()) + 1)
    counts = np.bincount(labels, minlength=inside.size)
    shares = {
        name: inside[value] / counts[value]
        for name, value in zip(atlas.names, atlas.values, strict=True)
        if value < counts.size and counts[value] > 0
    }
    ranked = sorted(shares, key=lambda name: -shares[name])
    return [name for name in ranked if shares[name] >= ROI_CORE_SHARE] or ranked[:1]


def truth_voxels(atrophy_map: np.ndarray) -> np.ndarray:
    """The voxels that are truly atrophied in a blob cohort: the atrophy map at
    ``BLOB_CORE`` of its peak or above."""
    peak = float(np.max(atrophy_map))
    return (
        np.asarray(atrophy_map >= BLOB_CORE * peak)
        if peak > 0
        else np.zeros_like(atrophy_map, bool)
    )
