"""ROAD's noisy linear imputation: removed voxels solved from their neighbours.

Each removed voxel takes the mean of its in-grid neighbours (six in 3D): the discrete
Laplace equation on the removed set, with the kept voxels as its boundary values, plus
Gaussian noise (Rong et al. 2022). The system depends only on which voxels are removed,
so :func:`neighbour_imputations` builds it once for a stack of images (a group map
removes the same voxels from every image) and solves every image against it.

The system is symmetric positive definite when each connected piece of the removed set
touches a kept voxel (a removed set with a piece that touches none is refused). It is
solved by conjugate gradients with a diagonal (Jacobi) preconditioner, to a relative
residual of ``RTOL``. On the 1.5 mm grid with six images (``benchmarks/road_speed.py``;
README, "Speed"), building one system for all and solving it so took 0.12 to 0.33 of the
time of SuperLU's direct solve per image (the imputation until round 12), and 0.14 to
1.06 of one SuperLU factorisation shared by the six; the solutions differed by at most
3e-9. Should conjugate gradients not converge, SuperLU solves the system directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg, spsolve

from neuromask.errors import ParameterError

#: The relative residual at which conjugate gradients stop: far below float32's
#: resolution of the images the CNN reads (about 6e-8 of a voxel's value).
RTOL = 1e-10


@dataclass(frozen=True)
class LaplaceSystem:
    """The imputation's linear system for one set of removed voxels on one grid.

    ``unknown``: the flat indices of the removed voxels; ``matrix``: the system (each
    row: the voxel's number of in-grid neighbours on the diagonal, -1 per removed
    neighbour); ``boundary``: the map from a flat image to the right-hand side (the sum
    of each removed voxel's kept neighbours)."""

    unknown: np.ndarray
    matrix: sparse.csr_matrix
    boundary: sparse.csr_matrix

    @classmethod
    def of(cls, removed: np.ndarray) -> LaplaceSystem:
        removed = np.asarray(removed, dtype=bool)
        shape = removed.shape
        unknown = np.flatnonzero(removed.ravel())
        index = np.full(removed.size, -1, dtype=np.int64)
        index[unknown] = np.arange(unknown.size)
        coords = np.unravel_index(unknown, shape)
        rows, cols, known_rows, known_cols = [], [], [], []
        degree = np.zeros(unknown.size)
        for axis in range(removed.ndim):
            for step in (-1, 1):
                neighbour = [c.copy() for c in coords]
                neighbour[axis] = neighbour[axis] + step
                valid = (neighbour[axis] >= 0) & (neighbour[axis] < shape[axis])
                degree += valid
                target = np.ravel_multi_index([n[valid] for n in neighbour], shape)
                source = np.flatnonzero(valid)
                is_unknown = index[target] >= 0
                rows.append(source[is_unknown])
                cols.append(index[target[is_unknown]])
                known_rows.append(source[~is_unknown])
                known_cols.append(target[~is_unknown])
        row = np.concatenate([*rows, np.arange(unknown.size)])
        col = np.concatenate([*cols, np.arange(unknown.size)])
        val = np.concatenate([-np.ones(row.size - unknown.size), degree])
        n = unknown.size
        matrix = sparse.csr_matrix((val, (row, col)), shape=(n, n))
        known_row = np.concatenate(known_rows)
        _require_boundary(removed, unknown, known_row)
        boundary = sparse.csr_matrix(
            (np.ones(known_row.size), (known_row, np.concatenate(known_cols))),
            shape=(n, removed.size),
        )
        return cls(unknown, matrix, boundary)

    def solve(self, image: np.ndarray) -> np.ndarray:
        """The removed voxels' values (in the order of ``unknown``) given ``image``'s
        kept ones."""
        rhs = self.boundary @ np.asarray(image, dtype=np.float64).ravel()
        preconditioner = sparse.diags(1.0 / self.matrix.diagonal())
        solution, info = cg(self.matrix, rhs, rtol=RTOL, atol=0.0, M=preconditioner)
        if info != 0:  # not converged in 10 n steps (not seen): the direct solve
            solution = spsolve(self.matrix.tocsc(), rhs)
        return np.atleast_1d(solution)


def _require_boundary(removed: np.ndarray, unknown: np.ndarray, known_row: np.ndarray) -> None:
    """Refuse a removed set with a piece (six-connected) that touches no kept voxel: its
    voxels would have no value to take, and the system would be singular."""
    pieces, count = ndimage.label(removed)
    touched = np.zeros(count + 1, dtype=bool)
    touched[pieces.ravel()[unknown[known_row]]] = True
    if not touched[1:].all():
        size = int(np.sum(pieces == 1 + int(np.argmin(touched[1:]))))
        raise ParameterError(
            f"imputation: a removed piece of {size} voxels has no kept neighbour, so "
            "nothing can be imputed into it; keep at least one voxel next to each piece"
        )


def neighbour_imputations(
    images: np.ndarray,
    removed: np.ndarray,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``images`` (N, *grid) with the ``removed`` voxels (bool, the grid's shape) imputed
    in each, plus Gaussian noise of SD ``noise`` drawn from ``rng`` image after image (as
    N calls of :func:`neighbour_imputation` would draw it)."""
    images = np.asarray(images, dtype=np.float64)
    out = images.reshape(images.shape[0], -1).copy()
    system = LaplaceSystem.of(removed)
    if system.unknown.size == 0:
        return out.reshape(images.shape)
    rng = rng or np.random.default_rng(0)
    for i in range(images.shape[0]):
        solution = system.solve(images[i])
        if noise > 0:
            solution = solution + rng.normal(0.0, noise, system.unknown.size)
        out[i, system.unknown] = solution
    return out.reshape(images.shape)


def neighbour_imputation(
    image: np.ndarray,
    removed: np.ndarray,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``image`` with the ``removed`` voxels (bool, same shape) replaced by the solution of
    the discrete Laplace equation (each equals the mean of its in-grid neighbours) given
    the other voxels, plus Gaussian noise of SD ``noise``: ROAD's noisy linear
    imputation."""
    return neighbour_imputations(np.asarray(image)[None], removed, noise, rng)[0]
