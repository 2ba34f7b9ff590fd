"""The masking loss, term by term (a functional core shared by group and session masks).

Every function takes masks of shape (B, 1, X, Y, Z) and returns one value per mask (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuromask.explain.config import MaskConfig
from neuromask.models.cpu_convolution import kernels_of
from neuromask.models.inference import perturb  # noqa: F401  (m X + (1 - m) mu, one place)

Reference = float | torch.Tensor


def size_term(masks: torch.Tensor, beta1: float, epsilon: float) -> torch.Tensor:
    """sum_u |1 - m(u)|^beta1, made finite at m = 1 for beta1 < 1 by a shift:
    (d + eps)^beta1 - eps^beta1 with d = 1 - m (m lies in [0, 1]). For beta1 >= 1 the plain
    power is used (its gradient is finite).

    d is ``(1 - m).clamp_min(0)`` rather than ``|1 - m|``: the gradient of abs at 0 is 0,
    which would leave the size term without any pull on a mask that starts at 1."""
    d = (1.0 - masks).clamp_min(0.0)
    if beta1 >= 1:
        values = d if beta1 == 1 else d.pow(beta1)
    else:
        values = (d + epsilon).pow(beta1) - epsilon**beta1
    return values.flatten(1).sum(1)


def smoothness_term(masks: torch.Tensor, beta2: float) -> torch.Tensor:
    """sum_u ||grad m(u)||_beta2^beta2 with forward differences along the three axes,
    that is sum over axes and voxels of |m(u + e_axis) - m(u)|^beta2."""
    total = masks.new_zeros(masks.shape[0])
    for axis in (2, 3, 4):
        n = masks.shape[axis]
        diff = masks.narrow(axis, 1, n - 1) - masks.narrow(axis, 0, n - 1)
        values = diff.abs() if beta2 == 1 else diff.abs().pow(beta2)
        total = total + values.flatten(1).sum(1)
    return total


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest value of each row (1-based), kept as a column, through the
    shorter of the two partial selections (``topk`` is several times faster than
    ``kthvalue`` on the CPU when k is a small share of the row)."""
    n = values.shape[1]
    if k <= n - k + 1:
        return values.topk(k, dim=1, largest=False).values.amax(1, keepdim=True)
    return values.topk(n - k + 1, dim=1).values.amin(1, keepdim=True)


def area_term(
    masks: torch.Tensor, area: float, weight: float, brain: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The area constraint of extremal perturbations (Fong, Patrick & Vedaldi 2019) and
    its gradient: ``weight * mean((sort(m) - r)^2)`` over the brain's voxels, where r
    holds 0 for the lowest ``area`` share of the voxels and 1 for the rest. It is 0 when
    the mask deletes exactly that share of the brain (m = 0 there, 1 elsewhere),
    whatever the shape deleted.

    Voxels of equal value that straddle the boundary share one target, the mean of r
    over their positions, in the gradient: it is the gradient averaged over every order
    of the ties. Otherwise the sort would hand the deletion to whichever tied voxels it
    lists first. Every voxel starts at m = 1, so at the first step that is a block in
    memory order, which the optimiser then keeps: measured on a CNN that a 5 % deletion
    did not fool, the mask was a box.

    A voxel's target depends only on how its value compares with the value at the
    boundary, so a partial selection of that value replaces a sort of the brain (round
    26): the gradient is the sorted form's bit for bit (tested), the term equal up to
    the order of its sum. ``brain``: a boolean mask of the grid, or its flat indices."""
    b = masks.shape[0]
    flat = masks.reshape(b, -1)
    if brain is None:
        inside = torch.arange(flat.shape[1], device=masks.device)
    elif brain.dtype == torch.bool:
        inside = torch.nonzero(brain.reshape(-1), as_tuple=True)[0]
    else:  # already the brain's flat indices
        inside = brain
    values = flat[:, inside]
    n = values.shape[1]
    k = int(round(area * n))
    if k >= n:
        target = torch.zeros_like(values)
        term = weight * values.pow(2).mean(1)
    else:
        boundary = _kth_smallest(values, k + 1)
        below, tied = values < boundary, values == boundary
        lo = below.sum(1)
        hi = lo + tied.sum(1)
        # the sorted form's 0/1 target: 0 below the boundary's value, 1 above it, and
        # within the tied group 0 at its k - lo positions before k, 1 at the others
        target = (~below).to(values.dtype)
        swapped = (k - lo).to(values.dtype) * (boundary[:, 0] * 2 - 1)  # c^2 - (c - 1)^2
        term = weight * ((values - target).pow(2).sum(1) + swapped) / n
        for row in range(b):
            if int(lo[row]) < k:  # the boundary falls inside the group: its mean target
                group = torch.ones(int(hi[row] - lo[row]), dtype=values.dtype)
                group[: k - int(lo[row])] = 0.0
                target[row, tied[row]] = group.mean().to(values.device)
    grad = torch.zeros_like(flat)
    grad[:, inside] = (values - target) * (2 * weight / n)
    return term, grad.reshape(masks.shape)


def _size_and_gradient(
    masks: torch.Tensor, lambda1: float, beta1: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """lambda1 * :func:`size_term` per mask and its gradient, in closed form."""
    d = (1.0 - masks).clamp_min(0.0)
    if beta1 < 1:
        shifted = d + eps
        size_values = shifted.pow(beta1).sub_(eps**beta1)
        grad = shifted.pow_(beta1 - 1).mul_(-lambda1 * beta1)
    elif beta1 == 1:
        size_values = d
        grad = torch.full_like(masks, -lambda1)
    else:
        size_values = d.pow(beta1)
        grad = d.pow(beta1 - 1).mul_(-lambda1 * beta1)
    return lambda1 * size_values.flatten(1).sum(1), grad


def regularisers(
    masks: torch.Tensor, config: MaskConfig, brain: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted size and smoothness terms per mask, and the gradient of their sum with
    respect to the masks, in closed form (no autograd graph over the voxels).

    The gradient is that of :func:`size_term` and :func:`smoothness_term` (checked against
    autograd in the tests); computing it directly keeps a mask step close to the cost of
    the CNN's forward and input-backward passes. With ``config.area`` > 0 the size term
    is :func:`area_term` over ``brain`` instead.
    """
    beta1, beta2, eps = config.beta1, config.beta2, config.size_epsilon
    if config.area > 0:
        size, grad = area_term(masks, config.area, config.area_weight, brain)
    else:
        size, grad = _size_and_gradient(masks, config.lambda1, beta1, eps)
    smooth = masks.new_zeros(masks.shape[0])
    for axis in (2, 3, 4):
        n = masks.shape[axis]
        diff = masks.narrow(axis, 1, n - 1) - masks.narrow(axis, 0, n - 1)
        magnitude = diff.abs()
        if beta2 == 1:
            smooth += magnitude.flatten(1).sum(1)
            g = diff.sign_()
        else:
            smooth += magnitude.pow(beta2).flatten(1).sum(1)
            g = magnitude.pow_(beta2 - 1).mul_(diff.sign()).mul_(beta2)
        g.mul_(config.lambda2)
        grad.narrow(axis, 1, n - 1).add_(g)
        grad.narrow(axis, 0, n - 1).sub_(g)
    return size, config.lambda2 * smooth, grad


def class_score(logits: torch.Tensor, target: int, score: str, margin: float = 0.0) -> torch.Tensor:
    """f: the target class's softmax probability, log-probability or logit, per image; or
    (``margin``) the hinge ``max(z_target - max_other z, -margin)`` of Carlini & Wagner,
    which stops rewarding deletion once the CNN prefers another class by ``margin``
    logits (two classes: P(target) = sigmoid(-margin), 0.047 for a margin of 3)."""
    if score == "logit":
        return logits[:, target]
    if score == "margin":
        others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
        return (logits[:, target] - others.max(dim=1).values).clamp_min(-margin)
    log_p = F.log_softmax(logits.float(), dim=1)[:, target]
    return log_p if score == "log_probability" else log_p.exp()


def score_and_gradient(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    config: MaskConfig,
    target: int,
    mu: Reference | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image score f, P(target), and the gradient of sum(f) with respect to the masks.

    The perturbed images are the autograd leaf: one forward and one backward pass to the
    input, then the chain rule d(m X + (1 - m) mu)/dm = X - mu. With one mask shared by
    the batch (group mode), the gradient is summed over the images. With
    ``config.precision = "bfloat16"`` the CNN runs under bfloat16 autocast; the logits,
    the score and the gradient come back in float32. With ``config.convolution`` other
    than ``"auto"`` its 3D convolutions on the CPU run through oneDNN (with
    ``"onednn-backward"`` their input gradients too; :mod:`neuromask.models.cpu_convolution`).
    """
    mu = config.mu if mu is None else mu
    delta = images - mu
    perturbed = (delta * masks).add_(mu).requires_grad_(True)
    mixed = config.precision == "bfloat16"
    with (
        torch.autocast(device_type=perturbed.device.type, dtype=torch.bfloat16, enabled=mixed),
        kernels_of(config.convolution),
    ):
        logits = model(perturbed)
    if mixed:
        logits = logits.float()
    score = class_score(logits, target, config.score, config.margin)
    (grad_input,) = torch.autograd.grad(score.sum(), perturbed)
    grad = grad_input.mul_(delta)
    if masks.shape[0] == 1 and images.shape[0] > 1:
        grad = grad.sum(0, keepdim=True)
    with torch.no_grad():
        probability = torch.softmax(logits.detach().float(), dim=1)[:, target]
    return score.detach(), probability, grad
