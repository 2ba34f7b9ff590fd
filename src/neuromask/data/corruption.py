"""Smooth random fields and segmentation failures, the building blocks of a synthetic
subject's variability and of the failures the quality check must catch."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from neuromask.errors import ParameterError
from neuromask.io.grid import Grid

QC_FAILURE_KINDS = ("block", "low_max")


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_vox: float, sd: float
) -> np.ndarray:
    """A smooth random field on ``shape``: Gaussian noise on a coarse lattice of
    ``spacing_vox`` voxels, interpolated by cubic splines, scaled to standard deviation ``sd``.

    The interpolation is separable, so it is applied as three small matrix products
    (one per axis) rather than a 3D spline evaluation at every voxel.
    """
    coarse_shape = tuple(max(2, int(math.ceil(s / spacing_vox)) + 1) for s in shape)
    fine = rng.standard_normal(coarse_shape).astype(np.float32)
    for axis, (n_fine, n_coarse) in enumerate(zip(shape, coarse_shape, strict=True)):
        weights = _cubic_upsampling(n_fine, n_coarse)
        fine = np.moveaxis(np.tensordot(weights, fine, axes=([1], [axis])), 0, axis)
    std = float(fine.std())
    return (fine * (sd / std if std > 0 else 0.0)).astype(np.float32)


@lru_cache(maxsize=32)
def _cubic_upsampling(n_fine: int, n_coarse: int) -> np.ndarray:
    """The (n_fine, n_coarse) matrix of 1D cubic-spline interpolation (corners aligned)."""
    eye = np.eye(n_coarse, dtype=np.float64)
    columns = [
        ndimage.zoom(eye[i], n_fine / n_coarse, order=3, mode="nearest", grid_mode=False)[:n_fine]
        for i in range(n_coarse)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def inject_qc_failure(
    gm: np.ndarray, kind: str, rng: np.random.Generator, grid: Grid
) -> np.ndarray:
    """Corrupt a GM map the way failed segmentations look.

    ``low_max``: the whole map is scaled so that its maximum falls between 0.55 and 0.9.
    ``block``: non-brain tissue of the lower half of the field of view (neck, face) is
    segmented as GM, as a block of values between 0.5 and 0.9.
    """
    gm = gm.copy()
    if kind == "low_max":
        gm *= float(rng.uniform(0.55, 0.9)) / max(float(gm.max()), 1e-6)
    elif kind == "block":
        nz = grid.shape[2] // 2
        block = gm[:, :, :nz]
        fill = (0.5 + 0.4 * rng.random(block.shape)).astype(np.float32)
        gm[:, :, :nz] = np.where(block < 0.05, fill, block)
    else:
        raise ParameterError(
            f"Unknown QC failure kind {kind!r}; expected one of {QC_FAILURE_KINDS}"
        )
    return gm
