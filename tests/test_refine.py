"""Coarse to fine (mask setting refine_epochs): the fine stage deletes only inside the
coarse mask's dilated region, the same volume, keeps a trace of the coarse rank, finds the
planted block, resumes to the same mask, and its settings are checked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from conftest import PLANTED_SHAPE as SHAPE
from conftest import planted_healthy_sessions as healthy_sessions
from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.extremal import stage_checkpoint
from neuromask.explain.refine import (
    COARSE_TRACE,
    dilate,
    refine_region,
    small_components,
    with_coarse_trace,
)

#: Without the gradient trace, which would take up to 1 % more from the kept voxels
#: (tests/test_gradient_trace.py).
#: (ladders here climb every area: the skip is tested on its own)
CONFIG = MaskConfig(
    area=0.06, max_epochs=6, patience=6, batch_size=4, refine_epochs=6, trace_depth=0.0,
    larger_area_skip_above=0.0,
)  # fmt: skip


def block() -> np.ndarray:
    inside = np.zeros(SHAPE, bool)
    inside[:3, :3, :3] = True
    return inside


def test_dilation_and_region():
    one = torch.zeros(SHAPE, dtype=torch.bool)
    one[3, 4, 4] = True
    assert int(dilate(one, 1).sum()) == 27 and int(dilate(one, 2).sum()) == 125
    assert torch.equal(dilate(one, 0), one)
    raw = torch.ones(1, 1, *SHAPE)
    raw[0, 0, 3, 4, 4] = 0.2
    brain = torch.ones(SHAPE, dtype=torch.bool)
    brain[:, :, 5:] = False
    region = refine_region(raw, 0.95, 1, brain)
    assert int(region.sum()) == 18  # the 3 x 3 x 3 cube, cut by the brain at z = 5
    assert stage_checkpoint("out/mask.pt", "refine").name == "mask.refine.pt"
    assert stage_checkpoint(None, "refine") is None


def test_coarse_trace_keeps_the_fine_deletion_and_ranks_the_rest():
    fine = torch.tensor([0.1, 1.0, 1.0, 0.97])
    coarse = torch.tensor([0.0, 0.2, 1.0, 0.6])
    out = with_coarse_trace(fine, coarse, 0.95)
    torch.testing.assert_close(out, torch.tensor([0.1, 1 - 0.8 * COARSE_TRACE, 1.0, 0.996]))
    assert out[1] < out[2]  # deleted by the coarse mask: ranks above a voxel it kept
    assert (out[1:] >= 1 - COARSE_TRACE).all()  # barely perturbed


def test_fine_stage_moves_the_deletion_within_the_coarse_region(planted_model):
    model, train, validation = planted_model
    sessions = healthy_sessions()
    _, coarse = MeaningfulPerturbation(
        model, dataclasses.replace(CONFIG, refine_epochs=0), reference=sessions
    ).attribute(train, 1, validation=validation)
    explainer = MeaningfulPerturbation(model, CONFIG, reference=sessions)
    masks, result = explainer.attribute(train, 1, validation=validation)
    m = masks[0, 0]
    deleted = m < CONFIG.keep_above
    region = ndimage.binary_dilation(  # computed apart from the library's dilation
        coarse.raw_masks[0, 0].numpy() < CONFIG.keep_above, structure=np.ones((3, 3, 3))
    )
    region = torch.as_tensor(region)
    assert region.sum() < 0.8 * region.numel()  # a region, not the whole grid
    assert deleted.any() and not bool((deleted & ~region).any())
    assert bool((m[~deleted] >= 1 - COARSE_TRACE).all())
    # the same volume as the coarse mask's area constraint, give or take its softness
    assert float((1 - m).sum()) == pytest.approx(CONFIG.area * m.numel(), rel=0.5)
    assert list(result.history["stage"].unique()) == ["coarse", "fine"]
    assert result.config == CONFIG and result.best_epoch >= len(coarse.history)
    # the planted block: deleted more densely than the rest, and the fine stage's share
    # of the deletion inside it is at least the coarse mask's
    inside = torch.as_tensor(block())
    fine_deletion, coarse_deletion = 1 - m, 1 - coarse.masks[0, 0]
    assert fine_deletion[inside].mean() > 3 * fine_deletion[~inside].mean()
    share = float(fine_deletion[inside].sum() / fine_deletion.sum())
    assert share >= float(coarse_deletion[inside].sum() / coarse_deletion.sum()) - 1e-6
    assert explainer.probabilities(validation, 1, masks).mean() < 0.5


def test_fine_stage_resumes_to_the_same_mask(planted_model, tmp_path):
    model, train, validation = planted_model
    sessions = healthy_sessions()
    straight, _ = MeaningfulPerturbation(model, CONFIG, reference=sessions).attribute(
        train, 1, validation=validation
    )
    explainer = MeaningfulPerturbation(model, CONFIG, reference=sessions)

    def interrupt(epoch: int) -> None:
        if epoch == 7:  # the fine stage's second epoch (the coarse stage ran 6)
            raise KeyboardInterrupt

    checkpoint = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        explainer.attribute(
            train, 1, validation=validation, checkpoint=checkpoint, after_epoch=interrupt
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.refine.pt"]
    resumed, _ = explainer.attribute(train, 1, validation=validation, checkpoint=checkpoint)
    assert torch.equal(straight, resumed)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"refine_epochs": -1}, "refine_epochs must be >= 0"),
        ({"refine_dilation": -2}, "refine_dilation must be >= 0 voxels"),
        ({"refine_lambda2": -1.0}, "refine_lambda2 must be >= 0"),
        ({"refine_lambda2": float("nan")}, "refine_lambda2 must be >= 0"),
        ({"refine_area": 0.03, "larger_areas": ()}, r"refine_area must be in \[0, 0.02\]"),
        ({"refine_area": 0.07}, r"refine_area must be in \[0, 0.06\]"),  # the top area
        ({"refine_area": -0.01}, "refine_area must be in"),
        ({"refine_area": float("nan")}, "refine_area must be in"),
        ({"refine_min_voxels": -1}, "refine_min_voxels must be >= 0"),
        ({"refine_below": 0.0}, r"refine_below must be in \(0, 1\]"),
        ({"refine_below": 1.5}, "refine_below must be in"),
        ({"larger_area_epochs": -1}, r"larger_area_epochs must be >= 0 \(0: max_epochs"),
        ({"larger_area_gain": 1.0}, r"larger_area_gain must be in \[0, 1\)"),
        ({"larger_area_gain": -0.1}, "larger_area_gain must be in"),
        ({"larger_area_gain": float("nan")}, "larger_area_gain must be in"),
        ({"larger_area_skip_above": 1.5}, r"larger_area_skip_above must be in \[0, 1\]"),
        ({"larger_area_skip_above": -0.1}, "larger_area_skip_above must be in"),
        ({"larger_area_skip_above": float("inf")}, "larger_area_skip_above must be in"),
    ],
)
def test_refine_settings_are_checked(fields, message):
    with pytest.raises(ParameterError, match=message):
        MaskConfig(**fields)


def test_only_coarse_area_constrained_group_masks_are_refined(planted_model):
    model, train, validation = planted_model
    assert MaskConfig().refines and not MaskConfig(refine_epochs=0).refines
    assert not MaskConfig(upsample=1).refines and not MaskConfig(area=0.0).refines
    voxel = dataclasses.replace(mask_preset("voxel"), refine_epochs=5, max_epochs=2)
    _, result = MeaningfulPerturbation(model, voxel).attribute(train, 1, validation=validation)
    assert "stage" not in result.history and len(result.history) == 2
    # session masks never get the fine stage, whatever refine_epochs says
    session = dataclasses.replace(CONFIG, max_epochs=2, patience=2)
    _, result = MeaningfulPerturbation(model, session, reference=healthy_sessions()).attribute(
        train[:2], 1, mode="session"
    )
    assert (result.history["epochs"] == 2).all()


def test_every_area_gets_its_fine_stage_and_is_judged_on_the_final_mask(planted_model):
    """With the fine stage on, each area of the ladder runs the coarse stage and then the
    fine stage, and the P(AD) that decides is the final mask's: the last area's recorded
    P(AD) is that of the mask returned (no halo or trace here, which would change it by
    up to 1 % of the kept voxels' value). The fine stage deletes the area being tried
    (8 % at the end), not the first one."""
    model, train, validation = planted_model
    config = dataclasses.replace(
        CONFIG, area=0.02, larger_areas=(0.04, 0.08), fooled_below=1e-9, max_epochs=3,
        patience=3, refine_epochs=3, halo_sigma=0.0,
    )  # fmt: skip
    explainer = MeaningfulPerturbation(model, config, reference=healthy_sessions())
    masks, result = explainer.attribute(train, 1, validation=validation)
    assert [row["area"] for row in result.areas_tried] == [0.02, 0.04, 0.08]
    stages = result.history.groupby("area", sort=False)["stage"].unique().map(list)
    assert stages.to_dict() == {a: ["coarse", "fine"] for a in (0.02, 0.04, 0.08)}
    assert [row["epochs"] for row in result.areas_tried] == [6, 6, 6]
    p_final = float(np.mean(explainer.probabilities(validation, 1, masks)))
    assert result.areas_tried[-1]["p_masked"] == pytest.approx(p_final, abs=1e-6)
    deleted = float((1 - masks[0, 0]).sum())
    assert deleted == pytest.approx(0.08 * masks.numel(), rel=0.5)
    assert deleted > 2 * 0.02 * masks.numel()


def three_areas(**changes) -> MaskConfig:
    """A ladder of 2, 4 and 8 % that no area ends (``fooled_below`` 1e-9), 3 epochs at
    the first area."""
    return dataclasses.replace(
        CONFIG, area=0.02, larger_areas=(0.04, 0.08), fooled_below=1e-9, max_epochs=3,
        patience=3, **changes,
    )  # fmt: skip


def test_larger_areas_take_their_own_epochs_and_stop_when_they_barely_help(planted_model):
    """``larger_area_epochs`` sets the coarse epochs of each larger area (the first keeps
    ``max_epochs``); ``larger_area_gain`` stops the ladder after the first area that
    lowered the masked P(AD) by less than that share, keeping that area's mask: the
    same, bit for bit, as a ladder that ends there."""
    model, train, validation = planted_model
    sessions = healthy_sessions()
    config = three_areas(refine_epochs=3, larger_area_epochs=1)
    full_masks, full = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert [row["epochs"] for row in full.areas_tried] == [6, 4, 4]
    coarse = full.history[full.history["stage"] == "coarse"].groupby("area").size()
    assert coarse.to_dict() == {0.02: 3, 0.04: 1, 0.08: 1}
    p = [row["p_masked"] for row in full.areas_tried]
    assert p[2] < p[1] < p[0]  # here each larger area lowers P(AD), by 91 % at 4 %
    fall = 1 - p[1] / p[0]
    stalled = dataclasses.replace(config, larger_area_gain=(1 + fall) / 2)  # above it
    masks, result = MeaningfulPerturbation(model, stalled, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert [row["area"] for row in result.areas_tried] == [0.02, 0.04]
    shorter = dataclasses.replace(config, larger_areas=(0.04,))
    ends, _ = MeaningfulPerturbation(model, shorter, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert torch.equal(masks, ends) and not torch.equal(masks, full_masks)
    # a gain that 4 % clears goes on to 8 %
    going = dataclasses.replace(config, larger_area_gain=fall / 2)
    masks, _ = MeaningfulPerturbation(model, going, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert torch.equal(masks, full_masks)


def test_an_area_far_from_fooling_skips_the_next(planted_model, tmp_path):
    """``larger_area_skip_above`` (round 18): after an area that leaves the masked P(AD)
    at that or more, the area after next is tried, not the next; the last area is never
    skipped. The skipped ladder gives, bit for bit, the mask of a ladder without the
    skipped area, and resumes to it after an interruption."""
    from neuromask.explain.extremal import next_stage
    from test_mask_levers import interrupted_and_resumed

    model, train, validation = planted_model
    sessions = healthy_sessions()
    config = three_areas(refine_epochs=2, larger_area_epochs=2)
    _, full = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    p = [row["p_masked"] for row in full.areas_tried]
    assert [row["area"] for row in full.areas_tried] == [0.02, 0.04, 0.08]
    assert p[1] < p[0]
    # a bar between 4 %'s and 2 %'s P(AD): 2 % is far from fooled, 4 % is skipped
    skipping = dataclasses.replace(config, larger_area_skip_above=(p[0] + p[1]) / 2)
    explainer = MeaningfulPerturbation(model, skipping, reference=sessions)
    masks, result = explainer.attribute(train, 1, validation=validation)
    assert [row["area"] for row in result.areas_tried] == [0.02, 0.08]
    assert result.areas_tried[0] == full.areas_tried[0]
    without = dataclasses.replace(config, larger_areas=(0.08,))
    direct, _ = MeaningfulPerturbation(model, without, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert torch.equal(masks, direct)
    # interrupted in the 8 % area's coarse stage (epoch 7 overall), resumed: the same
    resumed = interrupted_and_resumed(explainer, train, validation, tmp_path, 7)
    assert torch.equal(masks, resumed)
    # a bar above 2 %'s P(AD) skips nothing
    high = dataclasses.replace(config, larger_area_skip_above=min(1.0, p[0] + 1e-3))
    _, result = MeaningfulPerturbation(model, high, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert [row["area"] for row in result.areas_tried] == [0.02, 0.04, 0.08]
    # the rule itself: the last area is never skipped, 0 never skips
    ladder = MaskConfig()  # 2, 3, 4, 6 %, skip at 0.1
    assert [next_stage(ladder, s, 0.5) for s in range(4)] == [2, 3, 3, 4]
    assert [next_stage(ladder, s, 0.09) for s in range(4)] == [1, 2, 3, 4]
    assert next_stage(dataclasses.replace(ladder, larger_area_skip_above=0.0), 0, 1.0) == 1


def test_first_area_epochs_count_the_fine_stage_only_where_the_mask_refines():
    """``first_area_epochs`` is what the study plan and the cost estimate count."""
    assert MaskConfig().fine_epochs == 6 and MaskConfig().first_area_epochs == 18
    assert MaskConfig(max_epochs=20, refine_epochs=10).first_area_epochs == 30
    assert (
        MaskConfig(upsample=1).fine_epochs == 0 and MaskConfig(upsample=1).first_area_epochs == 12
    )
    assert MaskConfig(area=0.0).first_area_epochs == 12
    assert mask_preset("voxel").first_area_epochs == mask_preset("voxel").max_epochs


def test_larger_areas_run_at_most_max_epochs(planted_model):
    """The default ``larger_area_epochs`` (6 since round 24) is capped by ``max_epochs``:
    a mask of 3 epochs per area does not run 10 at each larger area; 0 means
    ``max_epochs``."""
    assert MaskConfig().larger_area_max_epochs == 6
    assert MaskConfig(larger_area_epochs=0).larger_area_max_epochs == 12
    assert MaskConfig(max_epochs=4).larger_area_max_epochs == 4
    model, train, validation = planted_model
    config = dataclasses.replace(
        CONFIG, area=0.02, larger_areas=(0.04,), fooled_below=1e-9, max_epochs=3,
        patience=3, refine_epochs=0, larger_area_epochs=10,
    )  # fmt: skip
    _, result = MeaningfulPerturbation(model, config, reference=healthy_sessions()).attribute(
        train, 1, validation=validation
    )
    assert [row["epochs"] for row in result.areas_tried] == [3, 3]


def test_a_ladder_that_stops_at_its_first_area_gives_the_mask_without_it(planted_model, tmp_path):
    """When the first area's mask (with its fine stage) already fools the CNN, the
    ladder changes nothing: the same mask, bit for bit, as without ``larger_areas``. An
    interrupted ladder resumes to the same mask from its stages' checkpoints."""
    from test_mask_levers import interrupted_and_resumed

    model, train, validation = planted_model
    sessions = healthy_sessions()
    plain = dataclasses.replace(
        CONFIG, area=0.02, max_epochs=3, patience=3, refine_epochs=3, larger_areas=()
    )
    alone, _ = MeaningfulPerturbation(model, plain, reference=sessions).attribute(
        train, 1, validation=validation
    )
    ladder = dataclasses.replace(plain, larger_areas=(0.04,), fooled_below=0.999)
    explainer = MeaningfulPerturbation(model, ladder, reference=sessions)
    masks, result = explainer.attribute(train, 1, validation=validation)
    assert [row["area"] for row in result.areas_tried] == [0.02]
    assert torch.equal(masks, alone)
    # the whole ladder, interrupted in the second area's fine stage (epoch 10 overall)
    never = dataclasses.replace(ladder, fooled_below=1e-9)
    explainer = MeaningfulPerturbation(model, never, reference=sessions)
    full, _ = explainer.attribute(train, 1, validation=validation)
    resumed = interrupted_and_resumed(explainer, train, validation, tmp_path, 10)
    assert torch.equal(full, resumed)
    names = ["c.area-1.pt", "c.area-1.refine.pt", "c.pt", "c.refine.pt"]
    # the score's floor adds its own checkpoint when the first stage leaves P(AD) above
    # floor_above, which depends on the planted CNN as this machine trained it
    left = sorted(p.name for p in tmp_path.iterdir() if ".floor" not in p.name)
    assert left == names


def test_small_components_are_the_specks_only():
    masks = torch.ones(2, 1, *SHAPE)
    masks[0, 0, :3, :3, :3] = 0.1  # a block of 27 voxels
    masks[0, 0, 6, 6, 6] = 0.5  # a speck of one voxel
    masks[0, 0, 5, 0, 0] = masks[0, 0, 6, 1, 1] = 0.2  # two voxels touching by a corner
    masks[1, 0, 6, 6, 6] = 0.96  # above keep_above: not deleted
    specks = small_components(masks, 0.95, 3)
    expected = torch.zeros_like(specks)
    expected[0, 0, 6, 6, 6] = expected[0, 0, 5, 0, 0] = expected[0, 0, 6, 1, 1] = True
    assert torch.equal(specks, expected)
    assert not small_components(masks, 0.95, 2)[0, 0, 5, 0, 0]  # a component of 2 stays
    assert not small_components(masks, 0.95, 0).any()


def test_refine_area_and_min_voxels_shape_the_fine_mask(planted_model):
    model, train, validation = planted_model
    sessions = healthy_sessions()
    # without the halo, which would take up to 1 % more from the kept voxels
    config = dataclasses.replace(CONFIG, refine_area=0.03, refine_min_voxels=4, halo_sigma=0.0)
    masks, _ = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    m = masks[0, 0]
    # half the coarse volume, give or take the mask's softness
    assert float((1 - m).sum()) == pytest.approx(0.03 * m.numel(), rel=0.5)
    labels, n = ndimage.label((m < config.keep_above).numpy(), structure=np.ones((3, 3, 3)))
    assert n >= 1 and np.bincount(labels.ravel())[1:].min() >= 4
    # every component below the bar: only the coarse trace is left
    config = dataclasses.replace(config, refine_min_voxels=m.numel())
    masks, _ = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert bool((masks >= 1 - COARSE_TRACE).all()) and bool((masks < 1).any())


def test_refine_below_bounds_the_region(planted_model, monkeypatch):
    """The fine stage's region is the coarse mask below ``refine_below``, dilated."""
    import neuromask.explain.refine as refine

    model, train, validation = planted_model
    seen = []

    def spy(coarse_raw, below, voxels, brain):
        seen.append(below)
        return refine_region(coarse_raw, below, voxels, brain)

    monkeypatch.setattr(refine, "refine_region", spy)
    config = dataclasses.replace(CONFIG, refine_below=0.5, max_epochs=2, refine_epochs=1)
    MeaningfulPerturbation(model, config, reference=healthy_sessions()).attribute(
        train, 1, validation=validation
    )
    assert seen == [0.5]
    raw = torch.ones(1, 1, *SHAPE)
    raw[0, 0, 1, 1, 1], raw[0, 0, 5, 5, 5] = 0.3, 0.7
    assert int(refine_region(raw, 0.5, 0, None).sum()) == 1
    assert int(refine_region(raw, 0.95, 0, None).sum()) == 2
