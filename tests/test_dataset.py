import os
import shutil

import numpy as np
import pytest

from neuromask.data import dataset as dataset_module
from neuromask.data.dataset import load_gm_maps
from neuromask.errors import GridMismatchError, MissingFileError, ParameterError
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import clinica_grid
from neuromask.io.nifti import load_volume, save_volume
from neuromask.io.participants import read_participants


@pytest.fixture
def sessions(tiny_cohort):
    return read_participants(tiny_cohort.participants).iloc[:6]


def test_stack_equals_file_by_file(tiny_cohort, sessions):
    data = load_gm_maps(tiny_cohort.caps, sessions, progress=False)
    assert data.images.shape == (6, *clinica_grid(6.0).shape)
    assert data.images.dtype == np.float32
    assert data.grid.matches(clinica_grid(6.0))
    for i, (p, s) in enumerate(
        zip(sessions["participant_id"], sessions["session_id"], strict=True)
    ):
        np.testing.assert_array_equal(
            data.images[i], load_volume(gm_map_path(tiny_cohort.caps, p, s))[0]
        )


def test_float16_on_request(tiny_cohort, sessions):
    full = load_gm_maps(tiny_cohort.caps, sessions, progress=False)
    half = load_gm_maps(tiny_cohort.caps, sessions, dtype="float16", progress=False)
    assert half.images.dtype == np.float16
    np.testing.assert_allclose(half.images.astype(np.float32), full.images, atol=1e-3)
    with pytest.raises(ParameterError, match="dtype"):
        load_gm_maps(tiny_cohort.caps, sessions, dtype="int8", progress=False)


def test_cache_is_reused_and_invalidated(tiny_cohort, sessions, tmp_path, monkeypatch):
    caps = tmp_path / "caps"
    shutil.copytree(tiny_cohort.caps, caps)
    first = load_gm_maps(caps, sessions, cache_dir=tmp_path / "cache", progress=False)
    assert not first.from_cache
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(dataset_module, "load_volume", no_reading)
    second = load_gm_maps(caps, sessions, cache_dir=tmp_path / "cache", progress=False)
    assert second.from_cache
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(second.images), first.images)
    monkeypatch.undo()

    # A changed file (new size or modification time) gives a new key.
    path = gm_map_path(caps, sessions["participant_id"][0], sessions["session_id"][0])
    data, grid = load_volume(path)
    save_volume(path, data * 0.5, grid)
    os.utime(path, ns=(1, 1))
    third = load_gm_maps(caps, sessions, cache_dir=tmp_path / "cache", progress=False)
    assert not third.from_cache
    np.testing.assert_allclose(third.images[0], first.images[0] * 0.5, rtol=1e-6)


def test_first_differing_file_is_named(tiny_cohort, sessions, tmp_path):
    caps = tmp_path / "caps"
    shutil.copytree(tiny_cohort.caps, caps)
    for row in (3, 4):
        path = gm_map_path(caps, sessions["participant_id"][row], sessions["session_id"][row])
        data, grid = load_volume(path)
        save_volume(path, data[:-1], type(grid)((grid.shape[0] - 1, *grid.shape[1:]), grid.affine))
    bad = gm_map_path(caps, sessions["participant_id"][3], sessions["session_id"][3])
    with pytest.raises(GridMismatchError, match=rf"{bad.name} is on a different voxel grid"):
        load_gm_maps(caps, sessions, progress=False)


def test_missing_file_is_named(tiny_cohort, sessions, tmp_path):
    caps = tmp_path / "caps"
    shutil.copytree(tiny_cohort.caps, caps)
    path = gm_map_path(caps, sessions["participant_id"][2], sessions["session_id"][2])
    path.unlink()
    with pytest.raises(MissingFileError, match=path.name):
        load_gm_maps(caps, sessions, progress=False)


def test_dartel_maps_are_read_from_their_own_folder(tiny_cohort, sessions, tmp_path):
    from neuromask.io.caps import gm_map_path as path_of

    caps = tmp_path / "caps"
    for p, s in zip(sessions["participant_id"], sessions["session_id"], strict=True):
        data, grid = load_volume(path_of(tiny_cohort.caps, p, s))
        target = path_of(caps, p, s, dartel_group="AD")
        assert target.parent.name == "group-AD" and target.parent.parent.name == "dartel"
        assert target.name.endswith("_modulated-on_probability.nii.gz")
        save_volume(target, 2 * data, grid)
    data = load_gm_maps(caps, sessions, dartel_group="AD", progress=False)
    plain = load_gm_maps(tiny_cohort.caps, sessions, progress=False)
    np.testing.assert_allclose(data.images, 2 * plain.images)
    with pytest.raises(MissingFileError):
        load_gm_maps(caps, sessions, progress=False)
