"""NIfTI volumes: checked reading, and writing that keeps the affine."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from neuromask.errors import ImageError, missing_file
from neuromask.io.atomic import atomic_path
from neuromask.io.grid import Grid

_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    OSError,
    ValueError,
)


def read_grid(path: str | os.PathLike[str]) -> Grid:
    """The voxel grid of a 3D NIfTI file, from its header alone."""
    img = _open(Path(path))
    return Grid(_spatial_shape(img, Path(path)), img.affine)


def load_volume(
    path: str | os.PathLike[str], grid: Grid | None = None, *, reference: str = "the first image"
) -> tuple[np.ndarray, Grid]:
    """Read a 3D NIfTI volume as float32 and check it.

    Errors name ``path`` and say what is wrong: a missing file, a corrupt or truncated
    file, a 4D image, NaN or infinite voxels, or (when ``grid`` is given) a different
    voxel grid, which is compared by shape *and* affine.
    """
    path = Path(path)
    img = _open(path)
    shape = _spatial_shape(img, path)
    image_grid = Grid(shape, img.affine)
    if grid is not None:
        grid.require_match(image_grid, what=f"Image {path}", reference=reference)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except _READ_ERRORS as exc:
        raise ImageError(f"Image {path} is corrupt or truncated: {exc}") from None
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise ImageError(f"Image {path} has {n_bad} NaN or infinite voxels.")
    return data, image_grid


def save_volume(path: str | os.PathLike[str], data: np.ndarray, grid: Grid) -> Path:
    """Write ``data`` on ``grid`` as float32 NIfTI, atomically, with sform and qform set."""
    path = Path(path)
    data = np.asarray(data, dtype=np.float32)
    if data.shape != grid.shape:
        raise ValueError(f"save_volume: data shape {data.shape} differs from grid {grid.shape}")
    img = nib.Nifti1Image(data, grid.affine)
    img.set_sform(grid.affine, code=4)  # 4 = MNI152 (NIFTI_XFORM_MNI_152)
    img.set_qform(grid.affine, code=4)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def _open(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise missing_file(path, "Image")
    try:
        img = nib.load(path)
    except _READ_ERRORS as exc:
        raise ImageError(f"Image {path} cannot be read as NIfTI: {exc}") from None
    return img  # type: ignore[return-value]


def _spatial_shape(img: nib.Nifti1Image, path: Path) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in img.shape)
    # A trailing axis of length 1 (as SPM sometimes writes) is still one 3D volume.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ImageError(f"Image {path} has shape {img.shape}: a single 3D volume is expected.")
    return (shape[0], shape[1], shape[2])
