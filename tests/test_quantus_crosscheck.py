"""The project's voxel AUC and relevance mass accuracy against Quantus's (an independent
implementation), on the 6 mm grid with AAL2 and generated maps, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from neuromask.io.atlas import load_aal2
from neuromask.io.grid import clinica_grid
from neuromask.metrics.localization import localization_scores

quantus = pytest.importorskip("quantus")
TRUTH = ["Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Fusiform_R"]


@pytest.fixture(scope="module")
def atlas():
    return load_aal2(clinica_grid(6.0))


def maps(atlas, rng):
    """An attribution that favours the truth, one of pure noise, and a mask with ties."""
    inside = atlas.mask(TRUTH)
    shape = atlas.labels.shape
    favour = rng.random(shape) + 0.5 * inside
    noise = rng.normal(size=shape)
    mask = np.ones(shape)
    mask[inside & (rng.random(shape) < 0.5)] = 0.2  # many voxels share a value
    mask[~inside & (rng.random(shape) < 0.05)] = 0.6
    return [("attribution", favour), ("attribution", noise), ("mask", mask)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voxel_auc_and_mass_accuracy_agree_with_quantus(atlas, seed):
    rng = np.random.default_rng(seed)
    inside = atlas.mask(TRUTH)
    brain = atlas.labels > 0
    for kind, values in maps(atlas, rng):
        ours = localization_scores(values, atlas, TRUTH, kind=kind)
        relevance = 1.0 - values if kind == "mask" else np.abs(values)
        auc = quantus.AUC(normalise=False, abs=False, disable_warnings=True).evaluate_batch(
            a_batch=relevance[brain][None], s_batch=inside[brain][None]
        )[0]
        mass = quantus.RelevanceMassAccuracy(
            normalise=False, abs=False, disable_warnings=True
        ).evaluate_batch(a_batch=relevance[None], s_batch=inside[None])[0]
        assert ours.voxel_auc == pytest.approx(auc, abs=1e-12), kind
        assert ours.mass_accuracy == pytest.approx(mass, abs=1e-12), kind
