"""The gradient trace of a group mask: its kept voxels ranked by the CNN's sensitivity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.gradient_trace import (
    TRACE_SIGMA,
    pairings,
    sensitivity,
    session_indices,
    with_trace,
)

GRID = (6, 5, 4)


class Linear(torch.nn.Module):
    """Logits (0, sum(w * x)): the score's gradient with respect to the input is w."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(weights.reshape(1, 1, *GRID).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _expected(w, images, fills, mask_brain=None):
    """mean over pairs of |w (X - F)|, smoothed, zero outside the brain, scaled to max 1."""
    mean = np.mean([np.abs(w * (x - f)) for x, f in zip(images, fills, strict=True)], axis=0)
    smooth = ndimage.gaussian_filter(mean, TRACE_SIGMA)
    if mask_brain is not None:
        smooth = np.where(mask_brain, smooth, 0.0)
    return smooth / smooth.max()


def test_pairings_reach_the_pair_count_with_healthy_sessions_only():
    assert pairings(16, True) == 4
    assert pairings(10, True) == 7
    assert pairings(64, True) == 1 and pairings(200, True) == 1
    assert pairings(16, False) == 1


def test_each_image_meets_distinct_cn_sessions_when_it_can():
    # the plain i + k n when it meets no session twice (the measured cases)
    np.testing.assert_array_equal(
        session_indices(16, 4, 64), np.arange(16)[None, :] + 16 * np.arange(4)[:, None]
    )
    # 8 images, 8 sessions: i + 8 k would pair each image with one session 8 times
    pairs = session_indices(8, pairings(8, True), 8)
    assert pairs.shape == (8, 8)
    assert all(len(set(pairs[:, i])) == 8 for i in range(8))
    assert sorted(np.bincount(pairs.ravel())) == [8] * 8  # every session used as often
    # 40 images, 20 sessions, 2 rounds: no image meets its session twice
    pairs = session_indices(40, 2, 20)
    assert (pairs[0] != pairs[1]).all()
    # more rounds than sessions: repeats cannot be avoided, and the plain step is kept
    np.testing.assert_array_equal(
        session_indices(2, 32, 3), (np.arange(2)[None, :] + 2 * np.arange(32)[:, None]) % 3
    )


def test_the_sensitivity_of_a_linear_score_with_a_constant_fill():
    gen = np.random.default_rng(0)
    w = gen.normal(size=GRID)
    images = gen.uniform(0, 1, size=(3, *GRID))
    brain = np.ones(GRID, dtype=bool)
    brain[0] = False
    model = Linear(torch.from_numpy(w).float())
    explainer = MeaningfulPerturbation(model, MaskConfig(reference="constant"), brain_mask=brain)
    mask = torch.ones((1, 1, *GRID))
    x = torch.from_numpy(images).float().unsqueeze(1)
    got = sensitivity(explainer, x, mask, target=1)
    want = _expected(w, images, [np.ones(GRID)] * 3, brain)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.max() == pytest.approx(1.0) and (got[0] == 0).all()
    # a score that does not move gives no trace at all
    still = MeaningfulPerturbation(Linear(torch.zeros(GRID)), MaskConfig(reference="constant"))
    assert not sensitivity(still, x, mask, target=1).any()


def test_the_sensitivity_averages_each_image_over_its_cn_pairings():
    gen = np.random.default_rng(1)
    w = gen.normal(size=GRID)
    images = gen.uniform(0, 1, size=(2, *GRID))
    sessions = gen.uniform(0, 1, size=(3, *GRID))
    model = Linear(torch.from_numpy(w).float())
    explainer = MeaningfulPerturbation(model, MaskConfig(), reference=sessions)
    mask = torch.full((1, 1, *GRID), 0.5)
    x = torch.from_numpy(images).float().unsqueeze(1)
    got = sensitivity(explainer, x, mask, target=1)
    rounds = pairings(2, True)  # 32: image i with session (i + 2 k) mod 3
    xs, fills = [], []
    for k in range(rounds):
        for i in range(2):
            xs.append(images[i])
            fills.append(np.maximum(images[i], sessions[(i + 2 * k) % 3]))
    np.testing.assert_allclose(got, _expected(w, xs, fills), atol=1e-5)
    # the batch size does not change it
    batched = MeaningfulPerturbation(model, MaskConfig(batch_size=2), reference=sessions)
    np.testing.assert_allclose(sensitivity(batched, x, mask, target=1), got, atol=1e-6)


def test_the_trace_ranks_kept_voxels_and_leaves_the_deletion():
    masks = torch.ones((1, 1, *GRID), dtype=torch.float64)
    masks[0, 0, :2] = 0.05
    s = np.random.default_rng(2).uniform(0, 1, size=GRID)
    out = with_trace(masks, s, 0.01)
    kept = masks == 1
    assert torch.allclose(out[~kept], masks[~kept], atol=0.05 * 0.01)
    assert float(out[kept].min()) >= 0.99 and float(out[kept].max()) <= 1
    # the kept voxels are ranked by the sensitivity, and stay above every deleted one
    relevance = 1 - out[0, 0].numpy()
    order = np.argsort(s[2:].ravel())
    assert (np.diff(relevance[2:].ravel()[order]) > 0).all()
    assert float(out[kept].min()) > float(out[~kept].max())
    assert with_trace(masks, s, 0.0) is masks


@pytest.mark.parametrize("value", [1.0, -0.01, float("nan"), float("inf")])
def test_trace_depth_is_checked(value):
    with pytest.raises(ParameterError, match="trace_depth"):
        MaskConfig(trace_depth=value)


def test_a_group_mask_gets_its_trace_and_a_session_mask_none(planted_model):
    model, train, validation = planted_model
    config = MaskConfig(
        reference="constant", area=0.06, max_epochs=2, refine_epochs=2, trace_depth=0.0
    )
    plain, _ = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)
    traced = dataclasses.replace(config, trace_depth=0.02)
    explainer = MeaningfulPerturbation(model, traced)
    masks, result = explainer.attribute(train, 1, validation=validation)
    s = sensitivity(explainer, train, plain, 1)
    assert s.max() == pytest.approx(1.0)
    assert torch.allclose(masks, with_trace(plain, s, 0.02), atol=1e-6)
    assert not torch.equal(masks, plain)
    assert result.settings()["mask"]["trace_depth"] == 0.02 and result.settings()["traced"]
    session = dataclasses.replace(mask_preset("session"), max_epochs=2)
    without, _ = MeaningfulPerturbation(model, session).attribute(train[:2], 1, mode="session")
    with_it, _ = MeaningfulPerturbation(
        model, dataclasses.replace(session, trace_depth=0.02)
    ).attribute(train[:2], 1, mode="session")
    assert torch.equal(without, with_it)


def test_a_group_mask_that_deletes_nothing_gets_no_trace(planted_model):
    """A mask held at 1 by its size term stays empty: the trace ranks what a mask keeps
    against what it deletes, and must not turn a mask that found nothing into a map."""
    model, train, validation = planted_model
    config = MaskConfig(
        reference="constant",
        area=0.0,
        upsample=1,
        refine_epochs=0,
        score_normalisation="none",
        lambda1=1e3,
        max_epochs=2,
        trace_depth=0.02,
    )
    masks, result = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)
    assert torch.equal(masks, torch.ones_like(masks))
    assert result.settings()["traced"] is False  # result.json says so
