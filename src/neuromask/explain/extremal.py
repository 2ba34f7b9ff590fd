"""The smallest sufficient area: group masks whose area grows until they fool the CNN.

Extremal perturbations (Fong, Patrick & Vedaldi 2019) fix a mask's area and optimise the
score under that constraint; their explanation is the smallest area whose deletion
suffices. With ``config.larger_areas``, a group mask is trained at ``config.area``; if it
does not bring the mean P(target) of the validation images (the training images without
a validation set) below ``config.fooled_below``, the next area is trained, starting from
the mask found so far (its variables, with a fresh optimiser), and so on. The first
sufficient mask is the result, or the largest area's when none suffices.

"Sufficient" only means something when deletion cannot fool the CNN by itself: with
mu = 1, a deleted voxel is pure GM, and 1 % of the brain sufficed on every tuning cohort
(docs/mask_levers.md, round 3). With the healthy reference (``reference = "healthy"``)
a deleted voxel takes max(X, H), so only restoring atrophied tissue moves the CNN, and
the area grows until what was restored explains the CNN's decision.

Each area's optimisation writes its own checkpoint (``checkpoint`` with ``.area-K``
before the suffix); a rerun resumes the unfinished one and replays the finished ones
from theirs, so the result is the same as an uninterrupted run.
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
    from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult


def stage_checkpoint(checkpoint: str | os.PathLike[str] | None, stage: str) -> Path | None:
    """The checkpoint of one stage of a group mask: ``mask.pt`` -> ``mask.<stage>.pt``
    (``area-1`` for the second area, ``refine`` for the fine stage)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.{stage}{path.suffix}")


def optimise_growing_area(
    explainer: MeaningfulPerturbation,
    x: torch.Tensor,
    target: int,
    validation: torch.Tensor | None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> PerturbationResult:
    """A group mask at ``config.area``, then at each of ``config.larger_areas`` in turn
    until the mean masked P(``target``) falls below ``config.fooled_below``."""
    cfg = explainer.config
    judged = validation if validation is not None else x
    initial: torch.Tensor | None = None
    tried: list[dict[str, float | int]] = []
    histories: list[pd.DataFrame] = []
    done_epochs = 0
    result: PerturbationResult | None = None
    for stage, area in enumerate((cfg.area, *cfg.larger_areas)):
        step = copy.copy(explainer)
        step.config = dataclasses.replace(cfg, area=area, larger_areas=())
        offset = done_epochs

        def shifted(epoch: int, offset: int = offset) -> None:
            if after_epoch is not None:
                after_epoch(offset + epoch)

        result = optimise_group_mask(
            step,
            x,
            target,
            validation,
            checkpoint=stage_checkpoint(checkpoint, f"area-{stage}"),
            after_epoch=shifted,
            initial=initial,
        )
        probability = float(np.mean(explainer.probabilities(judged, target, result.masks)))
        epochs = len(result.history)
        done_epochs += epochs
        tried.append({"area": area, "p_masked": probability, "epochs": epochs})
        histories.append(result.history.assign(area=area))
        if probability < cfg.fooled_below:
            break
        initial = result.mask_variables
    assert result is not None
    return dataclasses.replace(
        result,
        history=pd.concat(histories, ignore_index=True),
        config=cfg,
        areas_tried=tried,
    )
