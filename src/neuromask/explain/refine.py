"""Coarse to fine: a group mask refined at the images' resolution inside the coarse
mask's region.

A coarse mask (``config.upsample`` > 1) finds regions: a variable moves a patch of
voxels, so single voxels cannot be deleted one by one. But its smooth patches blur the
regions' edges, and the area constraint then spends part of its share on tissue next to
what the CNN reads. With ``config.refine_epochs`` > 0 a second optimisation follows, at
the images' resolution, in which only the coarse mask's deleted region (m below
``refine_below``, dilated by ``refine_dilation`` voxels) may be deleted. It starts from
the coarse mask and deletes the same volume (the area constraint's share of the brain),
so it can only move the deletion within the region. With the healthy reference, where a
deleted voxel takes max(X, H), restoring tissue that is not atrophied gains nothing, so
the fine mask settles on the atrophied voxels of the region.

The result is the fine mask. Wherever the fine stage keeps a voxel, the mask keeps a
trace of the coarse mask, 1 % of its depth (:data:`COARSE_TRACE`): the voxels the coarse
mask deleted then still rank above the rest, for scores that rank the whole brain, and
the image is barely changed there. Measured on the tuning cohorts (docs/mask_levers.md,
round 6).

``refine_area`` (0: the coarse mask's area) sets the fine stage's deleted share of the
brain apart from the coarse one. Its deleted components (26 neighbours) of fewer than
``refine_min_voxels`` voxels (default 27, a 3 x 3 x 3 cube) are put back to the coarse
trace after the optimisation: the fine stage otherwise leaves a fringe of single voxels
around its regions (on the tuning cohorts, 77 and 179 components in the top 5 % of the
brain became 4 and 49, with the same voxel AUC, mass and masked P(AD); round 7).

The fine stage writes its own checkpoint (``checkpoint`` with ``.refine`` before the
suffix), so a rerun resumes it after replaying the coarse stage from its checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from neuromask.explain.extremal import stage_checkpoint
from neuromask.explain.group import optimise_group_mask
from neuromask.explain.parametrisation import MaskGrid

#: How deep the coarse mask stays where the fine stage keeps a voxel: 1 % of its
#: deletion, enough to rank those voxels (for localisation scores) and too little to
#: perturb the image (on the tuning cohorts the masked P(AD) moved by at most 0.001 with
#: it: 0.007 to 0.006 and 0.070 to 0.070; docs/mask_levers.md, round 6).
COARSE_TRACE = 0.01

if TYPE_CHECKING:
    from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult


def dilate(region: torch.Tensor, voxels: int) -> torch.Tensor:
    """``region`` (X, Y, Z, bool) grown by ``voxels`` steps to the 26 neighbours."""
    grown = region[None, None].float()
    for _ in range(voxels):
        grown = F.max_pool3d(grown, kernel_size=3, stride=1, padding=1)
    return grown[0, 0] > 0.5


def refine_region(
    coarse_raw: torch.Tensor, below: float, voxels: int, brain: torch.Tensor | None
) -> torch.Tensor:
    """Where the fine stage may delete: the coarse mask's deleted voxels (raw mask below
    ``below``, the setting ``refine_below``), dilated by ``voxels``, inside the brain."""
    region = dilate(coarse_raw.reshape(coarse_raw.shape[-3:]) < below, voxels)
    if brain is not None:
        region &= brain.reshape(region.shape).to(region.device)
    return region


def refine_group_mask(
    explainer: MeaningfulPerturbation,
    coarse: PerturbationResult,
    x: torch.Tensor,
    target: int,
    validation: torch.Tensor | None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> PerturbationResult:
    """The fine stage after the coarse result ``coarse`` (see the module)."""
    cfg = explainer.config
    brain = explainer.area_brain
    device = explainer.device
    region = refine_region(
        coarse.raw_masks.to(device), cfg.refine_below, cfg.refine_dilation, brain
    )
    if not bool(region.any()):  # nothing deleted: nothing to refine
        return coarse
    n_brain = int(brain.sum()) if brain is not None else region.numel()
    # refine_area, or the same deleted volume as the coarse mask's (with larger_areas,
    # the area being tried: neuromask.explain.extremal)
    area = cfg.refine_area or cfg.area
    share = min(area * n_brain / int(region.sum()), 0.99)
    step = copy.copy(explainer)
    step.config = dataclasses.replace(
        cfg,
        upsample=1,
        area=share,
        lambda2=cfg.refine_lambda2,
        larger_areas=(),
        refine_epochs=0,
        refine_area=0.0,
        max_epochs=cfg.refine_epochs,
        restrict_to_brain=True,
    )
    step.brain = region
    # The score's factor (score_normalisation) places the coarse region; the fine stage
    # refines it with the score as it is. Scaled here too, it spread the demo's masks
    # into speckle over the brain (docs/mask_levers.md, round 8).
    step.score_scale = 1.0
    grid = tuple(region.shape)
    step.grid_map = MaskGrid(grid, 1, region.reshape(1, 1, *grid))
    coarse_raw = coarse.raw_masks.to(device).reshape(1, 1, *grid)
    start = torch.where(region.reshape(1, 1, *grid), coarse_raw, torch.ones_like(coarse_raw))
    done = len(coarse.history)

    def shifted(epoch: int) -> None:
        if after_epoch is not None:
            after_epoch(done + epoch)

    fine = optimise_group_mask(
        step,
        x,
        target,
        validation,
        checkpoint=stage_checkpoint(checkpoint, "refine"),
        after_epoch=shifted,
        initial=start,
    )
    history = pd.concat(
        [coarse.history.assign(stage="coarse"), fine.history.assign(stage="fine")],
        ignore_index=True,
    )
    specks = small_components(fine.raw_masks, cfg.keep_above, cfg.refine_min_voxels)
    fine_masks = fine.masks.masked_fill(specks, 1.0)
    fine_raw = fine.raw_masks.masked_fill(specks, 1.0)
    return dataclasses.replace(
        fine,
        masks=with_coarse_trace(fine_masks, coarse.raw_masks, cfg.keep_above),
        raw_masks=with_coarse_trace(fine_raw, coarse.raw_masks, cfg.keep_above),
        history=history,
        config=cfg,
        best_epoch=done + int(fine.best_epoch),  # type: ignore[arg-type]
        mask_variables=coarse.mask_variables,
    )


def with_coarse_trace(
    fine: torch.Tensor, coarse_raw: torch.Tensor, keep_above: float
) -> torch.Tensor:
    """The fine mask where it deletes (below ``keep_above``); elsewhere ``1 -
    COARSE_TRACE * (1 - coarse)``, so that the voxels the fine stage keeps still rank by
    the coarse mask while losing at most 1 % of their value."""
    trace = 1.0 - COARSE_TRACE * (1.0 - coarse_raw.to(fine.device).reshape(fine.shape))
    return torch.where(fine < keep_above, fine, trace)


def small_components(masks: torch.Tensor, keep_above: float, min_voxels: int) -> torch.Tensor:
    """Where ``masks`` (N, 1, X, Y, Z) delete (below ``keep_above``) in connected
    components (26 neighbours) of fewer than ``min_voxels`` voxels: the fine stage's
    specks, which ``refine_min_voxels`` puts back."""
    specks = torch.zeros_like(masks, dtype=torch.bool)
    if min_voxels <= 1:
        return specks
    deleted = (masks < keep_above).cpu().numpy()
    for i in range(deleted.shape[0]):
        labels, _ = ndimage.label(deleted[i, 0], structure=np.ones((3, 3, 3)))
        sizes = np.bincount(labels.ravel())
        small = (sizes < min_voxels)[labels] & (labels > 0)
        specks[i, 0] = torch.from_numpy(small)
    return specks
