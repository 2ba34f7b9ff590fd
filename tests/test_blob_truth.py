"""Blob-shaped atrophy: ground truth that follows no atlas ROI, scored at voxel level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuromask.data.atrophy import ROI_CORE_SHARE
from neuromask.data.dataset import load_gm_maps
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.errors import ParameterError
from neuromask.io.atlas import load_aal2
from neuromask.io.nifti import load_volume
from neuromask.io.participants import read_participants
from neuromask.metrics.localization import read_ground_truth, read_truth_voxels

BLOBS = SynthConfig(
    voxel_size=6.0, subjects_per_class=8, sessions=(1, 1), atrophy_blobs=3, atrophy_strength=0.4
)


@pytest.fixture(scope="module")
def blob_cohort(tmp_path_factory):
    return generate_cohort(BLOBS, tmp_path_factory.mktemp("blobs") / "synth", progress=False)


def test_blobs_cross_roi_boundaries_and_thin_the_gray_matter(blob_cohort):
    atrophy_map, grid = load_volume(blob_cohort.ground_truth / "atrophy_map.nii.gz")
    assert atrophy_map.max() == pytest.approx(BLOBS.atrophy_strength, rel=1e-6)  # peak 1
    truth = read_truth_voxels(blob_cohort.ground_truth, grid)
    atlas = load_aal2(grid)
    labels = atlas.labels[truth]
    assert len(set(labels[labels > 0])) >= 2  # the truth spans several ROIs ...
    rois = pd.read_csv(blob_cohort.ground_truth / "atrophy_rois.tsv", sep="\t")["roi_name"]
    assert (atlas.mask(list(rois)) & ~truth).any()  # ... and covers none of them whole
    sessions = read_participants(blob_cohort.participants)
    images = np.asarray(load_gm_maps(blob_cohort.caps, sessions, progress=False).images)
    inside = images[:, truth].mean(axis=1)
    ad, cn = sessions["diagnosis"].eq("AD").to_numpy(), sessions["diagnosis"].eq("CN").to_numpy()
    assert inside[ad].mean() < 0.9 * inside[cn].mean()


def test_voxel_scores_use_the_voxel_truth(blob_cohort, tiny_cohort):
    atrophy_map, grid = load_volume(blob_cohort.ground_truth / "atrophy_map.nii.gz")
    truth = read_ground_truth(blob_cohort.ground_truth, grid)
    atlas = load_aal2(grid)
    assert truth.voxels is not None
    perfect = truth.scores(atrophy_map, atlas, kind="attribution")
    noise = truth.scores(np.random.default_rng(0).random(grid.shape), atlas, kind="attribution")
    assert perfect.voxel_auc > 0.999 and abs(noise.voxel_auc - 0.5) < 0.1
    assert perfect.mass_accuracy > noise.mass_accuracy
    _, tiny_grid = load_volume(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    assert read_truth_voxels(tiny_cohort.ground_truth, tiny_grid) is None  # whole ROIs


def test_blob_rois_are_those_a_perfect_map_ranks_first(blob_cohort):
    """An ROI is atrophied when ROI_CORE_SHARE of its voxels lie in the voxel truth, so
    the truth itself, scored as a map, finds every truth ROI in its top k."""
    atrophy_map, grid = load_volume(blob_cohort.ground_truth / "atrophy_map.nii.gz")
    truth = read_ground_truth(blob_cohort.ground_truth, grid)
    atlas = load_aal2(grid)
    assert truth.voxels is not None
    shares = {
        name: truth.voxels[atlas.labels == value].mean()
        for name, value in zip(atlas.names, atlas.values, strict=True)
        if (atlas.labels == value).any()
    }
    assert all(shares[name] >= ROI_CORE_SHARE for name in truth.rois)
    left_out = [s for name, s in shares.items() if name not in truth.rois]
    assert max(left_out) < min(shares[name] for name in truth.rois)
    perfect = truth.scores(truth.voxels.astype(float), atlas, k=len(truth.rois), kind="attribution")
    assert perfect.roi_precision_at_k == 1.0 and perfect.roi_recall_at_k == 1.0


@pytest.mark.parametrize(
    "field, value", [("atrophy_blobs", -1), ("blob_radius_mm", 0.0), ("blob_radius_mm", np.nan)]
)
def test_blob_settings_are_checked(field, value):
    with pytest.raises(ParameterError, match=field):
        SynthConfig(**{field: value})


def test_two_cohorts_can_share_one_disease(tmp_path):
    adni = generate_cohort(BLOBS, tmp_path / "adni", progress=False)
    aibl_config = SynthConfig(
        voxel_size=6.0,
        subjects_per_class=2,
        sessions=(1, 1),
        cohort="aibl",
        atrophy_blobs=3,
        seed=BLOBS.seed + 1,
        blob_seed=BLOBS.seed,
    )
    aibl = generate_cohort(aibl_config, tmp_path / "aibl", progress=False)
    a, _ = load_volume(adni.ground_truth / "atrophy_map.nii.gz")
    b, _ = load_volume(aibl.ground_truth / "atrophy_map.nii.gz")
    np.testing.assert_allclose(a / a.max(), b / b.max(), atol=1e-6)
