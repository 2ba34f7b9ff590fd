"""The halo of a group mask: its kept voxels ranked by nearness to what it deletes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import PLANTED_SHAPE as SHAPE
from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.halo import with_halo


def _block_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """A mask of 1 with a deleted 3 x 3 x 3 block (0.1 deep in its middle), and a brain
    that leaves out the last slab of the grid."""
    masks = torch.ones((1, 1, 12, 10, 10), dtype=torch.float64)
    masks[0, 0, 2:5, 4:7, 4:7] = 0.0
    masks[0, 0, 3, 5, 5] = 0.1
    brain = torch.ones((12, 10, 10), dtype=torch.bool)
    brain[11] = False
    return masks, brain


def test_the_halo_ranks_kept_voxels_by_nearness_and_leaves_the_deletion():
    masks, brain = _block_mask()
    out = with_halo(masks, 1.5, 0.01, brain)
    deleted = masks < 0.5
    kept_inside = ~deleted & brain.reshape(1, 1, 12, 10, 10)
    # deleted voxels keep their value within the depth; every kept voxel loses at most
    # the depth, and stays above every deleted one
    assert torch.allclose(out[deleted], masks[deleted], atol=0.01 * 0.1)
    assert float(out[kept_inside].min()) >= 0.99 and float(out[kept_inside].max()) < 1
    assert float(out[kept_inside].min()) > float(out[deleted].max())
    # nearer kept voxels lose more, along a line away from the block
    line = out[0, 0, 5:11, 5, 5]
    assert bool((line[1:] > line[:-1]).all())
    # outside the brain the mask stays as it was
    assert bool((out[0, 0, 11] == 1).all())
    # the ranking of the relevance 1 - m: all deleted, then kept by distance to the block
    relevance = 1 - out[0, 0].numpy()
    assert relevance[6, 5, 5] > relevance[9, 5, 5] > relevance[9, 1, 1]


def test_the_halo_is_off_at_zero_and_keeps_a_mask_in_the_unit_interval():
    masks, brain = _block_mask()
    assert with_halo(masks, 0.0, 0.01, brain) is masks
    assert with_halo(masks, 2.0, 0.0, brain) is masks
    deep = with_halo(masks, 2.0, 0.99)  # no brain: everywhere
    assert float(deep.min()) >= 0 and float(deep.max()) <= 1
    assert float(deep[0, 0, 11].min()) < 1
    # each mask of a batch gets its own halo
    two = torch.cat([masks, torch.ones_like(masks)])
    out = with_halo(two, 2.0, 0.01, brain)
    assert torch.equal(out[1], torch.ones_like(masks[0]))
    assert torch.equal(out[:1], with_halo(masks, 2.0, 0.01, brain))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("halo_sigma", -1.0),
        ("halo_sigma", float("nan")),
        ("halo_sigma", float("inf")),
        ("halo_depth", 1.0),
        ("halo_depth", -0.01),
        ("halo_depth", float("nan")),
    ],
)
def test_halo_settings_are_checked(field, value):
    with pytest.raises(ParameterError, match=field):
        MaskConfig(**{field: value})


def test_a_group_mask_gets_its_halo_and_a_session_mask_none(planted_model):
    model, train, validation = planted_model
    config = MaskConfig(
        reference="constant",
        area=0.06,
        max_epochs=2,
        refine_epochs=2,
        halo_sigma=0.0,
        trace_depth=0.0,  # the halo alone
    )
    plain, result = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)
    brain = torch.ones(SHAPE, dtype=torch.bool)
    haloed = dataclasses.replace(config, halo_sigma=2.0, halo_depth=0.02)
    masks, halo_result = MeaningfulPerturbation(model, haloed).attribute(
        train, 1, validation=validation
    )
    assert torch.allclose(masks, with_halo(plain, 2.0, 0.02, brain))
    assert torch.allclose(halo_result.raw_masks, with_halo(result.raw_masks, 2.0, 0.02, brain))
    assert not torch.equal(masks, plain)
    # session masks never get one, whatever halo_sigma says (as with the fine stage)
    session = dataclasses.replace(mask_preset("session"), max_epochs=2)
    without, _ = MeaningfulPerturbation(model, session).attribute(train[:2], 1, mode="session")
    with_it, _ = MeaningfulPerturbation(
        model, dataclasses.replace(session, halo_sigma=2.0, halo_depth=0.02)
    ).attribute(train[:2], 1, mode="session")
    assert torch.equal(without, with_it) and bool((without < 1).any())
