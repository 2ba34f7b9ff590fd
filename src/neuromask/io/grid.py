"""Voxel grids: a shape and an affine, compared by both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromask.errors import GridMismatchError, ParameterError

#: Field of view of the Clinica t1-volume grid (Ixi549Space at 1.5 mm): the world
#: coordinates, in mm, of the first voxel centre and the extent to the last one.
CLINICA_ORIGIN_MM = (-90.0, -126.0, -72.0)
CLINICA_EXTENT_MM = (180.0, 216.0, 180.0)

#: Largest difference between two affines' entries (mm) still taken as the same grid.
AFFINE_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class Grid:
    """A 3D voxel grid: ``shape`` in voxels and the voxel-to-world ``affine`` (4 x 4)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        affine = np.asarray(self.affine, dtype=np.float64)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ParameterError(f"Grid: shape must be three positive sizes, got {self.shape}")
        if affine.shape != (4, 4):
            raise ParameterError(f"Grid: affine must be 4 x 4, got {affine.shape}")
        affine = affine.copy()
        affine.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm (always positive, whatever the orientation)."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def matches(self, other: Grid, atol: float = AFFINE_TOLERANCE) -> bool:
        """True when shapes are equal and affines agree to ``atol`` mm."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol, rtol=0.0)
        )

    def require_match(self, other: Grid, what: str, reference: str) -> None:
        """Raise :class:`GridMismatchError` naming ``what`` when ``other`` differs."""
        if self.matches(other):
            return
        raise GridMismatchError(
            f"{what} is on a different voxel grid than {reference}: "
            f"shape {other.shape} vs {self.shape}, "
            f"affine {_fmt_affine(other.affine)} vs {_fmt_affine(self.affine)}"
        )

    def to_dict(self) -> dict[str, list]:
        return {"shape": list(self.shape), "affine": self.affine.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        return cls(tuple(data["shape"]), np.asarray(data["affine"], dtype=np.float64))

    def __repr__(self) -> str:
        vs = "x".join(f"{v:g}" for v in self.voxel_size)
        return f"Grid(shape={self.shape}, voxel_size={vs} mm, origin={self.affine[:3, 3].tolist()})"


def clinica_grid(voxel_size: float = 1.5) -> Grid:
    """The Clinica t1-volume grid (RAS, origin (-90, -126, -72) mm) at ``voxel_size`` mm.

    At 1.5 mm this is exactly Clinica's 121 x 145 x 121 grid. Coarser sizes keep the same
    field of view: the first voxel centre stays at the origin and the last one stays at
    (90, 90, 108) mm whenever ``voxel_size`` divides 180 and 216 (1.5, 2, 3, 4, 6 mm...).

    >>> clinica_grid(1.5).shape
    (121, 145, 121)
    >>> clinica_grid(6).shape
    (31, 37, 31)
    """
    voxel_size = float(voxel_size)
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise ParameterError(f"voxel_size must be a positive number of mm, got {voxel_size}")
    shape = tuple(int(round(extent / voxel_size)) + 1 for extent in CLINICA_EXTENT_MM)
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = CLINICA_ORIGIN_MM
    return Grid(shape, affine)  # type: ignore[arg-type]


def _fmt_affine(affine: np.ndarray) -> str:
    return "[" + "; ".join(" ".join(f"{v:g}" for v in row) for row in affine[:3]) + "]"
