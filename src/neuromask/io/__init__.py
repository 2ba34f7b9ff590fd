"""Reading and writing: NIfTI volumes, TSV tables, CAPS paths, atlases, atomic output."""

from neuromask.io.atlas import Atlas, default_atlas, load_aal2, load_atlas
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.grid import Grid, clinica_grid
from neuromask.io.nifti import load_volume, save_volume
from neuromask.io.participants import read_participants

__all__ = [
    "Atlas",
    "Grid",
    "atomic_path",
    "clinica_grid",
    "default_atlas",
    "load_aal2",
    "load_atlas",
    "load_volume",
    "read_participants",
    "save_volume",
    "staged_output_dir",
]
