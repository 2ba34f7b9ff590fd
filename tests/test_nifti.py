import gzip

import nibabel as nib
import numpy as np
import pytest

from neuromask.errors import GridMismatchError, ImageError, MissingFileError
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, save_volume


def test_save_keeps_affine_and_values(tmp_path, odd_grid, rng):
    data = rng.random(odd_grid.shape).astype(np.float32)
    path = save_volume(tmp_path / "a.nii.gz", data, odd_grid)
    img = nib.load(path)
    np.testing.assert_array_equal(img.affine, odd_grid.affine)
    np.testing.assert_array_equal(img.header.get_sform(), odd_grid.affine)
    np.testing.assert_allclose(img.header.get_qform(), odd_grid.affine, atol=1e-6)
    loaded, grid = load_volume(path, odd_grid)
    np.testing.assert_array_equal(loaded, data)
    assert grid.matches(odd_grid)
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]  # no temporary left


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MissingFileError, match="nope.nii.gz"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_file_is_named(tmp_path, odd_grid, rng):
    path = save_volume(tmp_path / "t.nii.gz", rng.random(odd_grid.shape), odd_grid)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageError, match=r"t\.nii\.gz.*(corrupt|truncated|cannot be read)"):
        load_volume(path)


def test_garbage_file_is_named(tmp_path):
    path = tmp_path / "g.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti file at all" * 20))
    with pytest.raises(ImageError, match=r"g\.nii\.gz"):
        load_volume(path)


def test_nan_and_inf_are_rejected(tmp_path, odd_grid):
    data = np.zeros(odd_grid.shape, np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    path = save_volume(tmp_path / "n.nii.gz", data, odd_grid)
    with pytest.raises(ImageError, match=r"n\.nii\.gz has 2 NaN or infinite"):
        load_volume(path)


def test_4d_is_rejected_but_trailing_singleton_is_3d(tmp_path, odd_grid):
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((*odd_grid.shape, 2), np.float32), odd_grid.affine), four_d)
    with pytest.raises(ImageError, match=r"4d\.nii\.gz has shape \(7, 8, 9, 2\)"):
        load_volume(four_d)
    single = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((*odd_grid.shape, 1), np.float32), odd_grid.affine), single)
    data, _ = load_volume(single)
    assert data.shape == odd_grid.shape


def test_grid_mismatch_names_file(tmp_path, odd_grid):
    path = save_volume(tmp_path / "m.nii.gz", np.zeros(odd_grid.shape), odd_grid)
    other = Grid(odd_grid.shape, np.diag([2.0, 3.0, 4.0, 1.0]))
    with pytest.raises(GridMismatchError, match=r"m\.nii\.gz"):
        load_volume(path, other)


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from neuromask.io.atomic import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.tsv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.tsv").stat().st_mode) == 0o644
