"""Localisation scores against a synthetic cohort's ground truth, and ``neuromask localize``."""

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import mannwhitneyu

from neuromask.cli.main import cli
from neuromask.io.atlas import load_aal2
from neuromask.io.nifti import read_grid
from neuromask.metrics.localization import localization_scores, read_truth_rois


def value_of(atlas, name):
    return int(atlas.rois.set_index("roi_name").loc[name, "roi_value"])


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def truth(tiny_cohort):
    grid = read_grid(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    atlas = load_aal2(grid)
    rois = read_truth_rois(tiny_cohort.ground_truth)
    present = [r for r in rois if (atlas.labels == value_of(atlas, r)).any()]
    return {"grid": grid, "atlas": atlas, "rois": rois, "present": present}


def test_a_mask_deleting_exactly_the_truth_scores_perfectly(truth):
    atlas = truth["atlas"]
    inside = atlas.mask(truth["rois"])
    mask = np.where(inside, 0.0, 1.0)
    k = min(5, len(truth["present"]))
    s = localization_scores(mask, atlas, truth["rois"], k=k)
    assert s.roi_precision_at_k == 1.0
    assert s.roi_recall_at_k == pytest.approx(k / len(truth["rois"]))
    assert s.voxel_auc == 1.0 and s.mass_accuracy == 1.0
    everything = localization_scores(mask, atlas, truth["rois"], k=len(truth["present"]))
    assert everything.roi_recall_at_k == pytest.approx(len(truth["present"]) / len(truth["rois"]))


def test_an_empty_mask_has_chance_auc_and_no_mass(truth):
    s = localization_scores(np.ones(truth["grid"].shape), truth["atlas"], truth["rois"])
    assert s.voxel_auc == 0.5 and math.isnan(s.mass_accuracy)


def test_attribution_scores_match_an_independent_computation(truth, rng):
    atlas = truth["atlas"]
    values = rng.standard_normal(truth["grid"].shape)
    inside = atlas.mask(truth["rois"])
    values[inside] += 1.0  # some signal in the truth
    s = localization_scores(values, atlas, truth["rois"], kind="attribution")
    relevance = np.abs(values)
    brain = atlas.labels > 0
    pos, neg = relevance[brain & inside], relevance[brain & ~inside]
    u = mannwhitneyu(pos, neg).statistic
    assert s.voxel_auc == pytest.approx(u / (pos.size * neg.size), abs=1e-9)
    assert s.mass_accuracy == pytest.approx(relevance[inside].sum() / relevance.sum(), abs=1e-9)
    means = {
        name: relevance[atlas.labels == value_of(atlas, name)].mean()
        for name in atlas.names
        if (atlas.labels == value_of(atlas, name)).any()
    }
    top = sorted(means, key=lambda n: -means[n])[:5]
    assert list(s.top_rois) == top
    assert s.roi_precision_at_k == pytest.approx(len(set(top) & set(truth["rois"])) / 5)


def test_localize_command(tiny_cohort, truth, tmp_path):
    atlas = truth["atlas"]
    mask = np.where(atlas.mask(truth["rois"][:2]), 0.2, 1.0).astype(np.float32)
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, truth["grid"].affine), path)
    out = tmp_path / "scores.json"
    code, output = run("localize", path, "--truth", tiny_cohort.ground_truth, "--out", out)
    assert code == 0, output
    scores = json.loads(out.read_text())
    for key in ("roi_precision_at_k", "roi_recall_at_k", "voxel_auc", "mass_accuracy"):
        assert key in scores
    assert scores["mass_accuracy"] == pytest.approx(1.0)
    assert "ROI precision at 5" in output


def test_localize_errors(tiny_cohort, truth, tmp_path):
    grid = truth["grid"]
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.full(grid.shape, -2.0, np.float32), grid.affine), bad)
    code, output = run("localize", bad, "--truth", tiny_cohort.ground_truth)
    assert code == 1 and "--attribution" in output
    code, output = run("localize", bad, "--truth", tiny_cohort.ground_truth, "--attribution")
    assert code == 0, output
    flipped = grid.affine.copy()
    flipped[0, 0] *= -1
    las = tmp_path / "las.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(grid.shape, np.float32), flipped), las)
    code, output = run("localize", las, "--truth", tiny_cohort.ground_truth)
    assert code == 1 and "affine" in output
    code, output = run("localize", las, "--truth", tmp_path)
    assert code == 1 and "atrophy_rois.tsv does not exist" in output


def test_truth_rois_are_read_in_order(tiny_cohort):
    table = pd.read_csv(tiny_cohort.ground_truth / "atrophy_rois.tsv", sep="\t")
    assert read_truth_rois(tiny_cohort.ground_truth) == table["roi_name"].tolist()


def test_localize_measures_faithfulness_to_a_model(tiny_cohort, tiny_model, truth, tmp_path):
    """--model adds the deletion, insertion and ROAD areas, with mu = 1 and with healthy
    tissue as the reference, as the library computes them."""
    from neuromask.jobs.faithfulness import map_faithfulness

    atlas = truth["atlas"]
    mask = np.where(atlas.mask(truth["rois"]), 0.0, 1.0).astype(np.float32)
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, truth["grid"].affine), path)
    out = tmp_path / "scores.json"
    code, output = run(
        "localize", path, "--truth", tiny_cohort.ground_truth, "--model", tiny_model,
        "--images", 2, "--out", out,
    )  # fmt: skip
    assert code == 0, output
    scores = json.loads(out.read_text())
    direct = map_faithfulness(tiny_model, 1.0 - mask, images=2)
    assert len(scores["faithfulness_sessions"]) == len(direct.sessions) <= 2
    for key in (
        "mu_deletion_auc",
        "mu_insertion_auc",
        "road_auc",
        "healthy_insertion_auc",
        "healthy_road_auc",
    ):
        assert scores[key] == pytest.approx(direct.areas[key])
        assert 0.0 <= scores[key] <= 1.0
    assert "healthy_insertion_auc" in output
    code, output = run(
        "localize", path, "--truth", tiny_cohort.ground_truth, "--model", tiny_model,
        "--images", 0,
    )  # fmt: skip
    assert code == 2 and "--images" in output and "Traceback" not in output
