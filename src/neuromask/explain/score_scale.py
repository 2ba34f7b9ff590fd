"""Score normalisation: one weight of the score that fits CNNs of every sensitivity.

The mask's loss weighs the CNN's score against the area and smoothness terms. How much
a deletion moves the score differs between CNNs: measured at m = 1 with the healthy
reference, the sum over the brain of |d f / d m| ranged from 14 to 25 for the demo's
CNNs and from 26 to 146 for the tuning and suite cohorts' 3 mm CNNs. With fixed weights, the
regularisers then place the mask of a CNN of low sensitivity: on the demo's fold 0 the
logit moved from 3.1 to 2.9 in 25 epochs and the mask left P(AD) at 0.71.

With ``score_normalisation = "gradient"`` the score (and so its gradient) is multiplied
by ``score_gradient / G``, where G is that sum measured once, before the optimisation,
over the training images with the first epoch's fill. Every CNN then starts with the
same total pull of the score, ``score_gradient``, against the same regularisers.
``"floor"`` multiplies by ``max(1, score_gradient / G)``: it raises the pull of a CNN
whose score responds weakly and leaves every other CNN's loss exactly as it was. With
``floor_above`` > 0 (default 0.5) a group mask gets the floor only when the mask found
without it does not fool the CNN (:func:`floor_retry`).
G is a deterministic function of the images, the model and the seed, so a resumed job
measures the same scale. A group mask's fine stage (:mod:`neuromask.explain.refine`)
keeps the score as it is: the factor places the coarse region, and in the fine stage it
spread the demo's masks into speckle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuromask.errors import NeuromaskError
from neuromask.explain.objective import score_and_gradient

if TYPE_CHECKING:
    from neuromask.explain.config import MaskConfig
    from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult


def score_gradient_mass(
    explainer: MeaningfulPerturbation, images: torch.Tensor, target: int
) -> float:
    """G: sum over the brain's voxels (all voxels without a brain mask) of
    |d mean_i f_i / d m| at m = 1, over ``images`` in the optimisation's mini-batches, each
    with the fill drawn for epoch 0 (the full-resolution mask's gradient)."""
    cfg = explainer.config
    shape = (1, 1, *images.shape[2:])
    ones = torch.ones(shape, device=explainer.device)
    total = torch.zeros(shape, device=explainer.device)
    step = max(cfg.batch_size, 1)
    for b, start in enumerate(range(0, images.shape[0], step)):
        batch = images[start : start + step].to(explainer.device, torch.float32)
        mu = explainer.fill_of(batch, step=(0, b))
        _, _, grad = score_and_gradient(explainer.model, batch, ones, cfg, target, mu)
        total += grad
    total = total.abs() / images.shape[0]
    brain = explainer.area_brain
    return float(total.sum() if brain is None else total[brain.expand_as(total)].sum())


def score_scale(explainer: MeaningfulPerturbation, images: torch.Tensor, target: int) -> float:
    """The factor on a group mask's score (one for all ``images``)."""
    if explainer.config.score_normalisation == "none":
        return 1.0
    return scale_for(explainer.config, score_gradient_mass(explainer, images, target))


def session_scales(
    explainer: MeaningfulPerturbation, grad: torch.Tensor, fresh: list[int]
) -> dict[int, float]:
    """The factors on the scores of session masks at their first step (m = 1): G of
    each row ``fresh`` of ``grad``, the score's gradient per image (B, 1, X, Y, Z)."""
    if explainer.config.score_normalisation == "none":
        return dict.fromkeys(fresh, 1.0)
    brain = explainer.area_brain
    scales = {}
    for j in fresh:
        g = grad[j].abs()
        mass = float(g.sum() if brain is None else g[brain.expand_as(g)].sum())
        scales[j] = scale_for(explainer.config, mass)
    return scales


def scale_for(cfg: MaskConfig, mass: float) -> float:
    """1 (``"none"``), ``score_gradient / G`` (``"gradient"``) or ``max(1,
    score_gradient / G)`` (``"floor"``) for a measured G of ``mass``. Under ``"floor"``
    a score that does not respond at all (G = 0) keeps the factor 1: there is nothing
    to raise."""
    mode = cfg.score_normalisation
    if mode == "none" or (mode == "floor" and mass == 0):
        return 1.0
    if not (mass > 0 and math.isfinite(mass)):
        raise NeuromaskError(
            f"score_normalisation = {mode!r}: the score's gradient at m = 1 sums to "
            f"{mass} over the brain, so the CNN's score does not respond to deletion and "
            "cannot be normalised; use score_normalisation = 'none'"
        )
    scale = cfg.score_gradient / mass
    return max(1.0, scale) if mode == "floor" else scale


def floor_retry(
    explainer: MeaningfulPerturbation,
    plain: PerturbationResult,
    images: torch.Tensor,
    target: int,
    validation: torch.Tensor | None,
    checkpoint: str | os.PathLike[str] | None,
    after_epoch: Callable[[int], None] | None,
) -> PerturbationResult:
    """The floor where it is needed: ``plain`` is the group mask found with the score as
    it is. When it leaves the mean masked P(target) of the validation images (the
    training images without them) at ``floor_above`` or more, so that the regularisers
    rather than the CNN placed it, and the floor raises the score (G below
    ``score_gradient``), the mask is optimised again from the start with the floor, in
    its own checkpoints (``.floor``). Otherwise ``plain`` stands: a mask that fools its
    CNN is left exactly as the score as it is made it."""
    from neuromask.explain.extremal import stage_checkpoint

    judged = validation if validation is not None else images
    p = float(np.mean(explainer.probabilities(judged, target, plain.masks)))
    plain.floor = {"p_target_without": p, "applied": False}
    if p < explainer.config.floor_above:
        return plain
    scale = score_scale(explainer, images, target)
    if scale == 1.0:
        return plain
    explainer.score_scale = scale
    offset = len(plain.history)

    def shifted(epoch: int) -> None:
        if after_epoch is not None:
            after_epoch(offset + epoch)

    floored = explainer.group_stages(
        images, target, validation, stage_checkpoint(checkpoint, "floor"), shifted
    )
    floored.floor = {"p_target_without": p, "applied": True, "epochs_without": offset}
    return floored
