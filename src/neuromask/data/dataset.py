"""GM maps of many sessions in one array, with an optional on-disk cache.

The images are read once, checked (same grid for all, finite values), and stacked into
one ``(N, X, Y, Z)`` array. With a cache folder, the stack is also written as a ``.npy``
file keyed by the files' paths and a hash of their whole content; the next load with
the same files maps that file into memory and starts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import neuromask
from neuromask.data.qc import outside_unit_range
from neuromask.errors import NeuromaskWarning, ParameterError
from neuromask.io.atomic import atomic_path
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, read_grid
from neuromask.progress import track

DTYPES = {"float32": np.float32, "float16": np.float16}
_CACHE_FORMAT = 2  # 2: keyed on the files' content (1: on sizes and time stamps)


@dataclass
class GMDataset:
    """``images[i]`` is the GM map of ``sessions.iloc[i]``, on ``grid``."""

    images: np.ndarray
    sessions: pd.DataFrame
    grid: Grid
    paths: list[Path]
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])


def gm_paths(
    caps: str | os.PathLike[str], sessions: pd.DataFrame, dartel_group: str | None = None
) -> list[Path]:
    """The GM map path of every row of ``sessions``, in order."""
    return [
        gm_map_path(caps, p, s, dartel_group)
        for p, s in zip(sessions["participant_id"], sessions["session_id"], strict=True)
    ]


def load_gm_maps(
    caps: str | os.PathLike[str],
    sessions: pd.DataFrame,
    *,
    dartel_group: str | None = None,
    dtype: str = "float32",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> GMDataset:
    """Load the GM maps of ``sessions`` (a participants table) from a CAPS folder.

    Every image must share the first image's grid (shape and affine); the error names
    the first file that differs. ``dtype`` is ``"float32"`` or ``"float16"``.
    """
    if dtype not in DTYPES:
        raise ParameterError(
            f"load_gm_maps: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"
        )
    sessions = sessions.reset_index(drop=True)
    paths = gm_paths(caps, sessions, dartel_group)
    if not paths:
        raise ParameterError("load_gm_maps: the sessions table is empty")
    grid = read_grid(paths[0])
    np_dtype = DTYPES[dtype]
    shape = (len(paths), *grid.shape)

    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"gm-{_cache_key(paths, dtype)}.npy"
        meta_file = cache_file.with_suffix(".json")
        if cache_file.is_file() and meta_file.is_file():
            images = np.load(cache_file, mmap_mode="r")
            meta = json.loads(meta_file.read_text())
            cached_grid = Grid.from_dict(meta["grid"])
            if images.shape == shape and cached_grid.matches(grid):
                return GMDataset(images, sessions, grid, paths, from_cache=True)

    def fill(target: np.ndarray) -> None:
        for i in track(range(len(paths)), "Loading GM maps", enabled=progress):
            data, _ = load_volume(paths[i], grid, reference=f"the first image ({paths[0]})")
            if dartel_group is None and (reason := outside_unit_range(data)):
                warnings.warn(
                    f"{paths[i]} is not a GM probability map: its {reason} "
                    "(`neuromask qc` rejects it)",
                    NeuromaskWarning,
                    stacklevel=3,
                )
            target[i] = data

    if cache_file is None:
        images = np.empty(shape, dtype=np_dtype)
        fill(images)
        return GMDataset(images, sessions, grid, paths)

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": _CACHE_FORMAT,
        "neuromask_version": neuromask.__version__,
        "grid": grid.to_dict(),
        "paths": [str(p) for p in paths],
        "dtype": dtype,
    }
    with atomic_path(cache_file) as tmp:
        stack = np.lib.format.open_memmap(tmp, mode="w+", dtype=np_dtype, shape=shape)
        fill(stack)
        stack.flush()
        del stack
        # The metadata lands before the array: an array on disk always has its metadata.
        with atomic_path(cache_file.with_suffix(".json")) as meta_tmp:
            meta_tmp.write_text(json.dumps(meta, indent=1))
    return GMDataset(np.load(cache_file, mmap_mode="r"), sessions, grid, paths)


def _cache_key(paths: list[Path], dtype: str) -> str:
    """The cache's name: a hash of every file's path and of its whole content, so that a
    file replaced by another of the same size and time stamp (``cp -p``, ``rsync -a``)
    is read again. Hashing costs a fraction of reading the NIfTI files
    (``benchmarks/bench_loading.py``)."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}|{dtype}".encode())
    for path in paths:
        digest.update(f"{path.resolve()}|".encode())
        digest.update(file_digest(path))
    return digest.hexdigest()[:32]


def file_digest(path: Path) -> bytes:
    """BLAKE2b of a file's bytes (empty for a file that is not there: the load that
    follows names it)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "blake2b").digest()
    except OSError:
        return b""
