"""Score normalisation: one weight of the score that fits CNNs of every sensitivity.

The mask's loss weighs the CNN's score against the area and smoothness terms. How much
a deletion moves the score differs between CNNs: measured at m = 1 with the healthy
reference, the sum over the brain of |d f / d m| ranged from 16 to 30 for the demo's
CNNs and from 35 to 136 for the tuning and suite cohorts' CNNs. With fixed weights, the
regularisers then place the mask of a CNN of low sensitivity: on the demo's fold 0 the
logit moved from 3.1 to 2.9 in 25 epochs and the mask left P(AD) at 0.71.

With ``score_normalisation = "gradient"`` the score (and so its gradient) is multiplied
by ``score_gradient / G``, where G is that sum measured once, before the optimisation,
over the training images with the first epoch's fill. Every CNN then starts with the
same total pull of the score, ``score_gradient``, against the same regularisers.
``"floor"`` multiplies by ``max(1, score_gradient / G)``: it raises the pull of a CNN
whose score responds weakly and leaves every other CNN's loss exactly as it was.
G is a deterministic function of the images, the model and the seed, so a resumed job
measures the same scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from neuromask.errors import NeuromaskError
from neuromask.explain.objective import score_and_gradient

if TYPE_CHECKING:
    from neuromask.explain.perturbation import MeaningfulPerturbation


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
    """The factor on the score: 1, ``score_gradient / G`` under ``"gradient"``, or
    ``max(1, score_gradient / G)`` under ``"floor"``."""
    cfg = explainer.config
    if cfg.score_normalisation == "none":
        return 1.0
    mass = score_gradient_mass(explainer, images, target)
    if not (mass > 0 and torch.isfinite(torch.tensor(mass))):
        raise NeuromaskError(
            f"score_normalisation = 'gradient': the score's gradient at m = 1 sums to "
            f"{mass} over the brain, so the CNN's score does not respond to deletion and "
            "cannot be normalised; use score_normalisation = 'none'"
        )
    scale = cfg.score_gradient / mass
    return max(1.0, scale) if cfg.score_normalisation == "floor" else scale
