import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neuromask.errors import ParameterError, TableError
from neuromask.io.atlas import aal2_files, load_aal2, load_atlas
from neuromask.io.grid import Grid, clinica_grid


def nearest_labels(src: np.ndarray, src_affine: np.ndarray, grid: Grid, voxels: np.ndarray):
    """Independent nearest-neighbour lookup: world position of each target voxel, mapped
    back to the source voxel by the inverse affine and rounded.

    Returns the labels and a flag per voxel that is False where a coordinate falls on a
    half voxel (a tie, which floating-point noise may break either way).
    """
    world = grid.affine @ np.c_[voxels, np.ones(len(voxels))].T
    continuous = (np.linalg.inv(src_affine) @ world)[:3].T
    unambiguous = np.all(np.abs(continuous - np.floor(continuous) - 0.5) > 1e-6, axis=1)
    ijk = np.floor(continuous + 0.5).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(src.shape)), axis=1)
    out = np.zeros(len(voxels), dtype=int)
    out[inside] = src[tuple(ijk[inside].T)]
    return out, unambiguous


def test_aal2_has_120_rois_on_the_3mm_grid():
    atlas = load_aal2(clinica_grid(3.0))
    assert len(atlas.rois) == 120
    assert atlas.values.min() == 2001 and atlas.values.max() == 9170
    assert (atlas.rois["n_voxels"] > 0).all()
    assert set(np.unique(atlas.labels)) == {0, *atlas.values.tolist()}


def test_aal2_resampling_agrees_with_independent_nearest_neighbour(rng):
    grid = clinica_grid(3.0)
    atlas = load_aal2(grid)
    nifti, _ = aal2_files()
    src = nib.load(nifti)
    assert src.affine[0, 0] < 0  # the shipped file is LAS: orientation must come from affines
    voxels = np.c_[[rng.integers(0, s, 3000) for s in grid.shape]].T
    expected, clear = nearest_labels(np.asarray(src.dataobj), src.affine, grid, voxels)
    got = atlas.labels[tuple(voxels.T)]
    assert clear.sum() > 200
    np.testing.assert_array_equal(got[clear], expected[clear])


def test_hemispheres_land_on_the_right_side():
    grid = clinica_grid(3.0)
    atlas = load_aal2(grid)
    for name, sign in (("Hippocampus_L", -1), ("Hippocampus_R", 1)):
        centre = np.argwhere(atlas.mask([name])).mean(axis=0)
        x_world = (grid.affine @ np.r_[centre, 1.0])[0]
        assert np.sign(x_world) == sign
        assert 15 < abs(x_world) < 35


def test_stems_resolve_to_both_hemispheres_and_unknown_names_hint():
    atlas = load_aal2(clinica_grid(6.0))
    assert atlas.resolve(["Hippocampus", "Amygdala_L"]) == [
        "Hippocampus_L",
        "Hippocampus_R",
        "Amygdala_L",
    ]
    with pytest.raises(ParameterError, match="did you mean Hippocampus_R, Hippocampus_L"):
        atlas.resolve(["hippocampus_X"])
    with pytest.raises(ParameterError, match="Unknown ROI 'Nowhere'"):
        atlas.mask(["Nowhere"])


def test_user_atlas_from_nifti_and_tsv(tmp_path, odd_grid, rng):
    labels = rng.choice([0, 3, 7, 11], size=odd_grid.shape).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, odd_grid.affine), tmp_path / "atlas.nii.gz")
    pd.DataFrame({"roi_value": [3, 7, 11], "roi_name": ["a", "b", "c"]}).to_csv(
        tmp_path / "atlas.tsv", sep="\t", index=False
    )
    target = Grid(
        (5, 6, 7), np.array([[2.0, 0, 0, -2], [0, 2.5, 0, -16], [0, 0, 3, -28], [0, 0, 0, 1]])
    )
    atlas = load_atlas(tmp_path / "atlas.nii.gz", tmp_path / "atlas.tsv", target)
    voxels = np.argwhere(np.ones(target.shape, bool))
    expected, clear = nearest_labels(labels, odd_grid.affine, target, voxels)
    assert clear.sum() > 50
    np.testing.assert_array_equal(atlas.labels.ravel()[clear], expected[clear])
    counts = {v: int((atlas.labels == v).sum()) for v in (3, 7, 11)}
    assert dict(zip(atlas.rois["roi_value"], atlas.rois["n_voxels"], strict=True)) == counts


def test_user_atlas_table_errors(tmp_path, odd_grid):
    nib.save(
        nib.Nifti1Image(np.ones(odd_grid.shape, np.int16), odd_grid.affine), tmp_path / "a.nii.gz"
    )
    (tmp_path / "bad.tsv").write_text("value\tname\n1\tx\n")
    with pytest.raises(TableError, match=r"bad\.tsv lacks the column\(s\) roi_value, roi_name"):
        load_atlas(tmp_path / "a.nii.gz", tmp_path / "bad.tsv", odd_grid)
    (tmp_path / "dup.tsv").write_text("roi_value\troi_name\n1\tx\n1\ty\n")
    with pytest.raises(TableError, match=r"dup\.tsv, line 3: roi_value 1 is repeated"):
        load_atlas(tmp_path / "a.nii.gz", tmp_path / "dup.tsv", odd_grid)
