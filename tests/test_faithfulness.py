"""Deletion, insertion and ROAD curves on cases whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neuromask.errors import ParameterError
from neuromask.metrics.faithfulness import faithfulness_curves, ranked_brain_voxels
from neuromask.metrics.imputation import (
    LaplaceSystem,
    neighbour_imputation,
    neighbour_imputations,
)

GRID = (6, 7, 8)


class LinearCNN(nn.Module):
    """logit(AD) = w·x + b, logit(CN) = 0: P(AD) is known for any image."""

    def __init__(self, weights: np.ndarray, bias: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(weights, dtype=torch.float32).reshape(-1))
        self.b = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ad = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(ad), ad], dim=1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture
def case(rng):
    brain = np.zeros(GRID, bool)
    brain[1:5, 1:6, 1:7] = True
    weights = np.zeros(GRID)
    region = np.zeros(GRID, bool)
    region[2:4, 2:4, 2:5] = True  # 12 voxels drive the CNN
    weights[region] = 0.8
    # The region stands out from its neighbours, as tissue a CNN reads does: imputing it
    # from them (ROAD) removes its signal.
    values = rng.uniform(0.2, 0.4, (3, 1, *GRID))
    values[:, :, region] = rng.uniform(0.8, 1.0, (3, 1, int(region.sum())))
    images = torch.as_tensor(values, dtype=torch.float32)
    return brain, weights, region, images


def test_curves_match_the_closed_form(case):
    brain, weights, region, images = case
    model = LinearCNN(weights, bias=-3.0)
    relevance = np.where(region, 2.0, 0.0) + np.linspace(0, 1, np.prod(GRID)).reshape(GRID)
    fractions = (0.0, 0.05, 0.1)
    curves = faithfulness_curves(
        model, images, relevance, brain, reference=0.0, fractions=fractions, road_noise=0.0
    )
    order = ranked_brain_voxels(relevance, brain)
    x = images[:, 0].numpy().reshape(3, -1).astype(np.float64)
    w = weights.reshape(-1)
    for j, q in enumerate(fractions):
        top = order[: int(round(q * order.size))]
        deleted = x.copy()
        deleted[:, top] = 0.0
        inserted = np.where(brain.reshape(-1), 0.0, x)
        inserted[:, top] = x[:, top]
        np.testing.assert_allclose(curves.deletion[j], sigmoid(deleted @ w - 3.0).mean(), rtol=1e-5)
        np.testing.assert_allclose(
            curves.insertion[j], sigmoid(inserted @ w - 3.0).mean(), rtol=1e-5
        )
    assert curves.deletion[0] == pytest.approx(curves.road[0])  # nothing removed yet


def test_the_map_that_finds_the_region_wins_every_curve(case, rng):
    brain, weights, region, images = case
    model = LinearCNN(weights, bias=-3.0)
    truth = np.where(region, 1.0, 0.0) + 0.01 * rng.random(GRID)
    noise = rng.random(GRID)
    good = faithfulness_curves(model, images, truth, brain, reference=0.0).areas()
    bad = faithfulness_curves(model, images, noise, brain, reference=0.0).areas()
    assert good["deletion_auc"] < bad["deletion_auc"]
    assert good["insertion_auc"] > bad["insertion_auc"]
    assert good["road_auc"] < bad["road_auc"]


def test_imputation_reproduces_harmonic_images_and_ignores_the_hole(rng):
    ramp = np.add.outer(np.add.outer(np.arange(6.0), 2 * np.arange(7.0)), -0.5 * np.arange(8.0))
    hole = np.zeros(GRID, bool)
    hole[2:4, 1:5, 3:7] = True
    np.testing.assert_allclose(neighbour_imputation(ramp, hole), ramp, atol=1e-9)
    image = rng.random(GRID)
    filled = neighbour_imputation(image, hole)
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    inner = (3, 2, 4)  # an interior hole voxel equals the mean of its six neighbours
    neighbours = [
        filled[3 + a, 2 + b, 4 + c]
        for a, b, c in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
    ]
    assert filled[inner] == pytest.approx(np.mean(neighbours))
    noisy = neighbour_imputation(image, hole, noise=0.1, rng=np.random.default_rng(1))
    assert 0.05 < np.std(noisy[hole] - filled[hole]) < 0.2


def test_one_system_for_a_stack_gives_each_image_its_own_imputation(rng):
    hole = rng.random(GRID) < 0.3
    hole[0] = False  # every piece of the hole has kept neighbours
    images = rng.random((3, *GRID))
    stacked = neighbour_imputations(images, hole, noise=0.05, rng=np.random.default_rng(7))
    one_rng = np.random.default_rng(7)  # the noise is drawn image after image, as before
    for i in range(3):
        alone = neighbour_imputation(images[i], hole, noise=0.05, rng=one_rng)
        np.testing.assert_allclose(stacked[i], alone, atol=1e-12)
        np.testing.assert_array_equal(stacked[i][~hole], images[i][~hole])


def test_conjugate_gradients_agree_with_a_direct_solve(rng):
    from scipy.sparse.linalg import spsolve

    hole = np.zeros((12, 13, 14), bool)
    hole[2:10, 3:11, 1:13] = rng.random((8, 8, 12)) < 0.8  # pieces of many shapes
    image = rng.random(hole.shape)
    system = LaplaceSystem.of(hole)
    direct = spsolve(system.matrix.tocsc(), system.boundary @ image.ravel())
    np.testing.assert_allclose(system.solve(image), direct, atol=1e-8)


def test_a_hole_without_kept_neighbours_is_refused():
    hole = np.zeros((5, 5, 5), bool)
    hole[:, :, :2] = True  # a slab that touches the kept voxels: fine
    neighbour_imputation(np.ones(hole.shape), hole)
    hole[:] = True  # nothing kept: nothing to impute from
    with pytest.raises(ParameterError, match="piece of 125 voxels has no kept neighbour"):
        neighbour_imputation(np.ones(hole.shape), hole)


def test_settings_are_checked(case):
    brain, weights, _, images = case
    model = LinearCNN(weights, bias=0.0)
    with pytest.raises(ParameterError, match="fractions must rise"):
        faithfulness_curves(model, images, weights, brain, fractions=(0.1, 0.05))
    with pytest.raises(ParameterError, match="grid"):
        faithfulness_curves(model, images, weights[:-1], brain)


def test_ties_are_ranked_in_a_seeded_random_order_not_in_memory_order():
    brain = np.ones(GRID, bool)
    relevance = np.zeros(GRID)
    relevance[3, 3, 3] = 1.0  # one voxel first, every other one tied
    order = ranked_brain_voxels(relevance, brain, seed=4)
    assert order[0] == np.ravel_multi_index((3, 3, 3), GRID)
    np.testing.assert_array_equal(order, ranked_brain_voxels(relevance, brain, seed=4))
    assert not np.array_equal(order, ranked_brain_voxels(relevance, brain, seed=5))
    np.testing.assert_array_equal(np.sort(order), np.arange(np.prod(GRID)))
    # the first tenth of the tied voxels is spread over the grid, not one slab
    first_x = np.unravel_index(order[1 : 1 + order.size // 10], GRID)[0]
    assert len(np.unique(first_x)) == GRID[0]
    strict = np.arange(np.prod(GRID), dtype=float).reshape(GRID)  # no ties: value order
    np.testing.assert_array_equal(ranked_brain_voxels(strict, brain)[:3], [335, 334, 333])


def test_an_image_reference_fills_each_image_with_its_own(case):
    brain, weights, region, images = case
    model = LinearCNN(weights, bias=-3.0)
    relevance = np.where(region, 2.0, 0.0) + np.linspace(0, 1, np.prod(GRID)).reshape(GRID)
    start = torch.maximum(images, torch.full_like(images, 0.6))  # "healthy": max(X, H)
    curves = faithfulness_curves(
        model, images, relevance, brain, reference=start, fractions=(0.0, 0.1), road_noise=0.0
    )
    x = images[:, 0].numpy().reshape(3, -1).astype(np.float64)
    h = start[:, 0].numpy().reshape(3, -1).astype(np.float64)
    w = weights.reshape(-1)
    top = ranked_brain_voxels(relevance, brain)[: int(round(0.1 * brain.sum()))]
    deleted = x.copy()
    deleted[:, top] = h[:, top]
    inserted = np.where(brain.reshape(-1), h, x)
    inserted[:, top] = x[:, top]
    np.testing.assert_allclose(curves.deletion[1], sigmoid(deleted @ w - 3.0).mean(), rtol=1e-5)
    np.testing.assert_allclose(curves.insertion[1], sigmoid(inserted @ w - 3.0).mean(), rtol=1e-5)
    with pytest.raises(ParameterError, match="reference images"):
        faithfulness_curves(model, images, relevance, brain, reference=start[:2])


def test_road_on_an_anatomy_imputes_the_residual_and_adds_the_anatomy_back(case, rng):
    """A + imputed(X - A): a region whose deviation from the anatomy is harmonic (a ramp)
    comes back exactly, so removing it changes nothing; a dip in it (atrophy) is
    removed, whereas imputing the raw values from the region's dimmer neighbours (plain
    ROAD) dims the region too, as it does to gray matter beside white matter."""
    brain, weights, region, _ = case
    model = LinearCNN(weights, bias=-3.0)
    anatomy = rng.uniform(0.2, 0.4, (2, 1, *GRID))
    anatomy[:, :, region] = 0.9  # the region is tissue brighter than its surroundings
    ramp = 0.01 * np.add.outer(np.add.outer(np.arange(6.0), np.arange(7.0)), np.arange(8.0))
    healthy = anatomy + ramp
    atrophied = healthy.copy()
    atrophied[:, :, region] -= 0.3
    relevance = np.where(region, 1.0, 0.0)
    q = region.sum() / brain.sum()  # exactly the region is removed at the last fraction

    def road(images: np.ndarray, with_anatomy: bool) -> float:
        return faithfulness_curves(
            model, torch.as_tensor(images, dtype=torch.float32), relevance, brain,
            fractions=(0.0, q), road_noise=0.0,
            road_anatomy=torch.as_tensor(anatomy) if with_anatomy else None,
        ).road[-1]  # fmt: skip

    w = weights.reshape(-1)
    as_healthy = sigmoid(healthy.reshape(2, -1) @ w - 3.0).mean()
    assert road(healthy, True) == pytest.approx(as_healthy, rel=1e-5)
    assert road(atrophied, True) == pytest.approx(as_healthy, rel=1e-5)
    assert road(healthy, False) < as_healthy - 0.2  # plain ROAD dims the region
    with pytest.raises(ParameterError, match="anatomy images"):
        faithfulness_curves(
            model, torch.as_tensor(healthy, dtype=torch.float32), relevance, brain,
            road_anatomy=anatomy[:1],
        )  # fmt: skip


@pytest.mark.parametrize("n_images", [2, 5])
def test_healthy_versions_pair_image_i_with_session_i_mod_k(n_images):
    """The healthy version of image i is max(X_i, H_(i mod K)), whether there are fewer
    images than CN sessions or more; with no session, the error names what is missing."""
    from neuromask.explain.reference import HealthyReference
    from neuromask.jobs.faithfulness import healthy_versions

    rng = np.random.default_rng(0)
    sessions = rng.random((3, 4, 5, 6)).astype(np.float32)
    images = torch.from_numpy(rng.random((n_images, 1, 4, 5, 6)).astype(np.float32))
    got = healthy_versions(sessions, images)
    for i in range(n_images):
        assert torch.equal(
            got[i, 0], torch.maximum(images[i, 0], torch.from_numpy(sessions[i % 3]))
        )
    full = HealthyReference(sessions, torch.device("cpu")).paired(images, range(n_images))
    assert torch.equal(got, full)
    with pytest.raises(ParameterError, match="needs cognitively normal sessions"):
        healthy_versions(sessions[:0], images)
