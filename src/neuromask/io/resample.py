"""Resampling a NIfTI image onto a :class:`~neuromask.io.grid.Grid` (world coordinates)."""

from __future__ import annotations

import warnings
from typing import Literal

import nibabel as nib
import numpy as np
from nilearn.image import resample_img

from neuromask.io.grid import Grid


def resample_to_grid(
    img: nib.Nifti1Image,
    grid: Grid,
    interpolation: Literal["continuous", "linear", "nearest"] = "continuous",
) -> np.ndarray:
    """Resample ``img`` onto ``grid`` through world coordinates; return the array.

    Orientation (RAS vs LAS affines) is handled by the affines, never by flipping arrays.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = resample_img(
            img,
            target_affine=grid.affine,
            target_shape=grid.shape,
            interpolation=interpolation,
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(out.dataobj)
