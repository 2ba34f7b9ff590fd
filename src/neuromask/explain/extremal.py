"""The smallest sufficient area: group masks whose area grows until they fool the CNN.

Extremal perturbations (Fong, Patrick & Vedaldi 2019) fix a mask's area and optimise the
score under that constraint; their explanation is the smallest area whose deletion
suffices. With ``config.larger_areas`` (those above ``config.area``: ``config.areas``),
a group mask is trained at ``config.area``; if it does not bring the mean P(target) of
the validation images (the training images without a validation set) below
``config.fooled_below``, the next area is trained, starting from the mask found so far
(its coarse variables, with a fresh optimiser), and so on. The first sufficient mask is
the result, or the largest area's when none suffices. The defaults try 2, 3, 4 and 6 %
(round 15), and skip the next area after one that leaves the masked P(target) at
``config.larger_area_skip_above`` (0.1) or more: a mask far from fooled climbs 2, 4,
6 %; one that nearly fools steps to 3 % as before (round 18).

With the fine stage on (``config.refines``), every area gets it before it is judged:
what decides is the mask the user gets, not the coarse one. The coarse mask alone did
not fool the CNN of a 1.5 mm tuning cohort at 2, 4 or 8 % (mean masked P(AD) 0.878,
0.781, 0.328), while with its fine stage 4 % did (0.045; docs/mask_levers.md, round 14);
judged on the coarse mask, the area always climbed to the top of the ladder.

"Sufficient" only means something when deletion cannot fool the CNN by itself: with
mu = 1, a deleted voxel is pure GM, and 1 % of the brain sufficed on every tuning cohort
(docs/mask_levers.md, round 3). With the healthy reference (``reference = "healthy"``)
a deleted voxel takes max(X, H), so only restoring atrophied tissue moves the CNN, and
the area grows until what was restored explains the CNN's decision.

Each area's optimisation writes its own checkpoint (``checkpoint`` with ``.area-K``
before the suffix; its fine stage ``.area-K.refine``); a rerun resumes the unfinished
one and replays the finished ones from theirs, so the result is the same as an
uninterrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from neuromask.explain.group import optimise_group_mask

if TYPE_CHECKING:
    from neuromask.explain.config import MaskConfig
    from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult


def stage_checkpoint(checkpoint: str | os.PathLike[str] | None, stage: str) -> Path | None:
    """The checkpoint of one stage of a group mask: ``mask.pt`` -> ``mask.<stage>.pt``
    (``area-1`` for the second area, ``refine`` for the fine stage)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.{stage}{path.suffix}")


def next_stage(cfg: MaskConfig, stage: int, probability: float) -> int:
    """The index in ``cfg.areas`` of the area tried after area ``stage`` left the masked
    P(target) at ``probability`` (not fooled): the next, or the one after it when
    ``probability`` is at least ``cfg.larger_area_skip_above`` (> 0) and that one exists.
    ``len(cfg.areas)`` when none is left."""
    skip = cfg.larger_area_skip_above
    if skip > 0 and probability >= skip and stage + 2 < len(cfg.areas):
        return stage + 2
    return stage + 1


def grow_area(
    explainer: MeaningfulPerturbation,
    first: PerturbationResult,
    x: torch.Tensor,
    target: int,
    validation: torch.Tensor | None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
    offset: int = 0,
) -> PerturbationResult:
    """``first``, the group mask at ``config.area`` (both stages, and the score's floor
    if it was needed), if it brings the mean masked P(``target``) below
    ``config.fooled_below``; otherwise the mask at each larger area of ``config.areas``
    in turn, each with its fine stage when ``config.refines`` and with the score's
    factor ``first`` was made with, until one does. Each larger area's coarse stage runs
    ``config.larger_area_max_epochs`` epochs (``larger_area_epochs``, at most
    ``max_epochs``); with
    ``config.larger_area_gain`` > 0 the ladder also stops after an area that lowered
    the masked P(``target``) by less than that share of the previous area's. After an
    area that leaves it at ``config.larger_area_skip_above`` (> 0) or more, the area
    after next is tried (:func:`next_stage`). The mask returned is the last one made.
    ``offset``: the epochs already reported to ``after_epoch``."""
    from neuromask.explain.refine import refine_group_mask

    cfg = explainer.config
    judged = validation if validation is not None else x
    result, histories, tried = first, [], []
    # best_epoch is a row of the returned history, which holds the floored run only
    best_epoch, rows = int(first.best_epoch), len(first.history)  # type: ignore[arg-type]
    stage = 0
    while True:
        area = cfg.areas[stage]
        if stage > 0:
            step = copy.copy(explainer)  # the same score_scale
            epochs = cfg.larger_area_max_epochs
            step.config = dataclasses.replace(cfg, area=area, larger_areas=(), max_epochs=epochs)

            def shifted(epoch: int, offset: int = offset) -> None:
                if after_epoch is not None:
                    after_epoch(offset + epoch)

            own = stage_checkpoint(checkpoint, f"area-{stage}")
            initial = result.mask_variables
            result = optimise_group_mask(
                step, x, target, validation, checkpoint=own, after_epoch=shifted, initial=initial
            )
            if cfg.refines:
                result = refine_group_mask(
                    step, result, x, target, validation, checkpoint=own, after_epoch=shifted
                )
            best_epoch = rows + int(result.best_epoch)  # type: ignore[arg-type]
            offset, rows = offset + len(result.history), rows + len(result.history)
        if stage == 0 and first.floor is not None and not first.floor["applied"]:
            probability = float(first.floor["p_target_without"])  # measured for the floor
        else:
            probability = float(np.mean(explainer.probabilities(judged, target, result.masks)))
        tried.append({"area": area, "p_masked": probability, "epochs": len(result.history)})
        histories.append(result.history.assign(area=area))
        if probability < cfg.fooled_below:
            break
        gain = cfg.larger_area_gain
        if stage > 0 and gain > 0 and probability > (1 - gain) * tried[-2]["p_masked"]:
            break  # this area barely helped: the next is not tried
        stage = next_stage(cfg, stage, probability)
        if stage >= len(cfg.areas):
            break
    return dataclasses.replace(
        result,
        history=pd.concat(histories, ignore_index=True),
        config=cfg,
        best_epoch=best_epoch,
        areas_tried=tried,
        floor=first.floor,
    )
