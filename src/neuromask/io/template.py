"""The ICBM152 gray-matter probability template (shipped with nilearn) on any grid."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from nilearn.datasets import load_mni152_gm_template

from neuromask.io.grid import Grid
from neuromask.io.resample import resample_to_grid


def gm_template(grid: Grid) -> np.ndarray:
    """The 1 mm ICBM152 GM template resampled onto ``grid``, float32 in [0, 1].

    The result is cached per grid and read-only; copy it before changing it.
    """
    return _gm_template_cached(grid.shape, grid.affine.tobytes())


@lru_cache(maxsize=8)
def _gm_template_cached(shape: tuple[int, int, int], affine_bytes: bytes) -> np.ndarray:
    grid = Grid(shape, np.frombuffer(affine_bytes, dtype=np.float64).reshape(4, 4))
    data = resample_to_grid(load_mni152_gm_template(resolution=1), grid, "continuous")
    data = np.clip(np.asarray(data, dtype=np.float32).reshape(shape), 0.0, 1.0)
    data.setflags(write=False)
    return data
