import numpy as np
import pytest

from neuromask.errors import GridMismatchError, ParameterError
from neuromask.io.grid import Grid, clinica_grid


def test_clinica_grid_at_1_5_mm_is_clinicas():
    grid = clinica_grid(1.5)
    assert grid.shape == (121, 145, 121)
    expected = np.array(
        [[1.5, 0, 0, -90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]], dtype=float
    )
    np.testing.assert_array_equal(grid.affine, expected)


@pytest.mark.parametrize("voxel_size", [2.0, 3.0, 4.0, 6.0])
def test_coarser_grids_keep_the_field_of_view(voxel_size):
    fine, coarse = clinica_grid(1.5), clinica_grid(voxel_size)
    for grid in (fine, coarse):
        first = grid.affine @ np.array([0, 0, 0, 1.0])
        last = grid.affine @ np.array([*(s - 1 for s in grid.shape), 1.0])
        np.testing.assert_allclose(first[:3], [-90, -126, -72])
        np.testing.assert_allclose(last[:3], [90, 90, 108])
    assert coarse.voxel_size == (voxel_size,) * 3


def test_grids_are_compared_by_affine_not_only_shape():
    ras = clinica_grid(1.5)
    las_affine = ras.affine.copy()
    las_affine[0, 0] = -1.5
    las_affine[0, 3] = 90
    las = Grid(ras.shape, las_affine)
    assert ras.shape == las.shape
    assert not ras.matches(las)
    with pytest.raises(GridMismatchError, match="affine"):
        ras.require_match(las, what="Image x.nii.gz", reference="the model")


def test_grid_roundtrip_and_bad_values(odd_grid):
    assert Grid.from_dict(odd_grid.to_dict()).matches(odd_grid)
    assert odd_grid.voxel_size == (2.0, 3.0, 4.0)
    with pytest.raises(ParameterError):
        clinica_grid(0)
    with pytest.raises(ParameterError):
        Grid((3, 3), np.eye(4))
