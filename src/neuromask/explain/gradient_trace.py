"""The gradient trace: a group mask's kept voxels ranked by what deleting them would do.

A group mask deletes a small share of the brain and keeps the rest at or near m = 1;
the halo (:mod:`neuromask.explain.halo`) ranks the kept voxels by their nearness to the
deleted regions. The gradient trace ranks them also by the CNN's own answer to the
question the mask asks, to first order: how much would the score fall if this voxel
were deleted too, at the final mask? For a mask m, an image X and its fill F (``mu``,
the reference image, or healthy tissue max(X, H)), the score's derivative with respect
to m(u) is ``df/dx(u) * (X(u) - F(u))``. Its absolute value, averaged over the mask's
images and over several CN sessions for each (the pairings of
:meth:`~neuromask.explain.reference.HealthyReference.paired`), smoothed by a Gaussian
of :data:`TRACE_SIGMA` voxel and scaled to a maximum of 1 inside the brain, is the
sensitivity S, and::

    m' = m * (1 - trace_depth * S)

Where the mask deletes (m near 0) nothing changes; a kept voxel loses at most
``trace_depth`` of its value. Like the halo, it barely changes the masked image; it
decides the order of the voxels that the mask keeps, which scores ranking the whole
brain (voxel AUC, the insertion and deletion curves) read. A mask that deletes nothing
(no value below ``keep_above``) gets no trace, which would turn it into a gradient map:
it stays empty, as the sanity checks and the studies expect of a mask that found
nothing. The measurement that set its depth is in docs/mask_levers.md (round 13).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from neuromask.explain.objective import score_and_gradient
from neuromask.explain.reference import HealthyReference
from neuromask.progress import Bar

if TYPE_CHECKING:
    from neuromask.explain.perturbation import MeaningfulPerturbation

#: The Gaussian (voxels) that smooths the sensitivity.
TRACE_SIGMA = 1.0
#: At least this many (image, CN session) pairs are averaged: with fewer images, each is
#: paired with several sessions.
TRACE_PAIRS = 64


def pairings(n_images: int, healthy: bool) -> int:
    """How many CN sessions each of ``n_images`` is paired with: enough for
    :data:`TRACE_PAIRS` pairs in all with a healthy reference, else 1 (a fixed fill)."""
    return max(1, math.ceil(TRACE_PAIRS / n_images)) if healthy else 1


def session_indices(n_images: int, rounds: int, n_sessions: int) -> np.ndarray:
    """(rounds, n_images): the CN session of image i's k-th pairing, i + k s mod K for
    K = ``n_sessions``, with s the smallest step from ``n_images`` on that meets no
    session twice per image (k s not a multiple of K for 0 < k < ``rounds``); s =
    ``n_images`` when none does (``rounds`` > K: an image must meet a session twice)."""
    k = np.arange(rounds)[:, None]
    step = next(
        (
            s
            for s in range(n_images, n_images + n_sessions)
            if not np.any((k[1:] * s) % n_sessions == 0)
        ),
        n_images,
    )
    return (np.arange(n_images)[None, :] + k * step) % n_sessions


def sensitivity(
    explainer: MeaningfulPerturbation, images: torch.Tensor, mask: torch.Tensor, target: int
) -> np.ndarray:
    """S (X, Y, Z) of the shared ``mask`` (1, 1, X, Y, Z, at the images' resolution) over
    ``images`` (N, 1, X, Y, Z); see the module. Image i's k-th pairing takes the CN
    session of :func:`session_indices` (i + k N mod the sessions' number, unless that
    meets a session twice). All zeros when the score does not move."""
    n = images.shape[0]
    mu = explainer.mu
    rounds = pairings(n, isinstance(mu, HealthyReference))
    sessions = session_indices(n, rounds, len(mu) if isinstance(mu, HealthyReference) else 1)
    batch = max(1, explainer.config.batch_size)
    starts = [(k, i) for k in range(rounds) for i in range(0, n, batch)]
    total = torch.zeros(mask.shape[2:], dtype=torch.float64)
    mask = mask.to(explainer.device)
    with Bar(len(starts), "gradient trace", enabled=explainer.progress) as bar:
        for k, i in starts:
            x = images[i : i + batch].to(explainer.device, torch.float32)
            fill = explainer.fill_of(x, indices=sessions[k, i : i + len(x)].tolist())
            shared = mask.expand(len(x), -1, -1, -1, -1)
            _, _, grad = score_and_gradient(
                explainer.model, x, shared, explainer.config, target, fill
            )
            total += grad.abs().sum(dim=(0, 1)).double().cpu()
            bar.advance(1)
    smooth = ndimage.gaussian_filter(total.numpy() / (n * rounds), TRACE_SIGMA)
    brain = explainer.area_brain
    if brain is not None:
        smooth = np.where(brain.cpu().numpy().reshape(smooth.shape), smooth, 0.0)
    top = float(smooth.max())
    return smooth / top if top > 0 else np.zeros_like(smooth)


def with_trace(masks: torch.Tensor, sensitivity: np.ndarray, depth: float) -> torch.Tensor:
    """``masks`` (N, 1, X, Y, Z) times 1 - ``depth`` * ``sensitivity`` (X, Y, Z, in
    [0, 1]); ``depth`` = 0 returns ``masks`` unchanged."""
    if depth == 0:
        return masks
    factor = 1.0 - depth * torch.from_numpy(sensitivity).to(masks.device, masks.dtype)
    return (masks * factor).clamp(0.0, 1.0)
