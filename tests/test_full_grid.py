"""A few checks on the full 121 x 145 x 121 Clinica grid (1.5 mm)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neuromask.data.qc import run_qc
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.io.atlas import load_aal2
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import clinica_grid
from neuromask.io.participants import read_participants

pytestmark = pytest.mark.full_grid

CLINICA_AFFINE = np.array(
    [[1.5, 0, 0, -90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]], dtype=float
)


@pytest.fixture(scope="module")
def full_cohort(tmp_path_factory):
    config = SynthConfig(voxel_size=1.5, subjects_per_class=1, sessions=(1, 1), qc_failures=1)
    return generate_cohort(config, tmp_path_factory.mktemp("full") / "synth", progress=False)


def test_synth_writes_the_clinica_grid(full_cohort):
    table = read_participants(full_cohort.participants)
    for p, s in zip(table["participant_id"], table["session_id"], strict=True):
        img = nib.load(gm_map_path(full_cohort.caps, p, s))
        assert img.shape == (121, 145, 121)
        np.testing.assert_array_equal(img.affine, CLINICA_AFFINE)
        data = np.asarray(img.dataobj)
        assert data.dtype == np.float32 and data.min() >= 0.0 and data.max() <= 1.0


def test_qc_on_the_full_grid(full_cohort):
    table = run_qc(full_cohort.caps, read_participants(full_cohort.participants), progress=False)
    truth = pd.read_csv(full_cohort.ground_truth / "sessions.tsv", sep="\t")
    np.testing.assert_array_equal(table["qc_pass"], truth["qc_failure"] == "none")
    clean = table[table["qc_pass"]]
    assert (clean["max_gm"] >= 0.95).all()
    assert clean["nonzero_fraction"].between(0.15, 0.5).all()


def test_aal2_on_the_clinica_grid():
    grid = clinica_grid(1.5)
    atlas = load_aal2(grid)
    assert atlas.labels.shape == (121, 145, 121)
    assert len(atlas.rois) == 120 and (atlas.rois["n_voxels"] > 0).all()
    # Left structures at negative x in world space (RAS), whatever the source's orientation.
    left = np.argwhere(atlas.mask(["Hippocampus_L"])).mean(axis=0)
    assert (grid.affine @ np.r_[left, 1.0])[0] < -15
