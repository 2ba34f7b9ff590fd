"""The one batched, gradient-free forward pass of a frozen CNN, optionally on masked images.

Prediction, evaluation, mask validation, per-image mask losses and prob_CNN all run the
CNN the same way: images in batches, moved to the model's device as float32, perturbed
by a mask as ``m * X + (1 - m) * mu`` when one is given, in eval mode, without autograd
and outside any autocast region.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

#: What deleted voxels take: a constant, a reference image broadcastable against the
#: images, or a function of a batch of images and their indices in the set being scored
#: (:class:`neuromask.explain.reference.HealthyReference`).
Fill = float | torch.Tensor | Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def freeze(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, in eval mode (BatchNorm statistics fixed, dropout off), with
    no parameter requiring a gradient."""
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def perturb(images: torch.Tensor, masks: torch.Tensor, mu: float | torch.Tensor) -> torch.Tensor:
    """m * X + (1 - m) * mu (the masked image of meaningful perturbation); ``mu`` is a
    constant or a reference image broadcastable against the images."""
    return masks * images + (1.0 - masks) * mu


def batched_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    mu: Fill = 1.0,
    batch_size: int = 8,
    indices: np.ndarray | None = None,
    device: torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Logits of ``images`` (N, 1, X, Y, Z), batch by batch.

    ``masks``: one mask (1, 1, X, Y, Z) shared by every image, or one per image (N, ...),
    on any device. ``indices``: only these images, in this order. ``device``: where the
    model runs (default: where its parameters are).
    """
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    order = np.arange(images.shape[0]) if indices is None else np.asarray(indices)
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if indices is None:
                x = images[int(chunk[0]) : int(chunk[-1]) + 1]
            else:
                x = images[torch.as_tensor(chunk)]
            x = x.to(device=device, dtype=torch.float32, non_blocking=True)
            if masks is not None:
                m = masks if masks.shape[0] == 1 else masks[start : start + batch_size]
                ref: float | torch.Tensor
                if callable(mu):  # a reference of each image (the healthy reference)
                    ref = mu(x, chunk)
                else:
                    ref = mu.to(device) if isinstance(mu, torch.Tensor) else mu
                x = perturb(x, m.to(device), ref)
            yield model(x).float()


def class_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    target: int | None = None,
    mu: Fill = 1.0,
    batch_size: int = 8,
    indices: np.ndarray | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """Softmax probabilities (N, classes), or P(``target``) (N,), of :func:`batched_logits`."""
    out = []
    for logits in batched_logits(
        model, images, masks, mu=mu, batch_size=batch_size, indices=indices, device=device
    ):
        p = torch.softmax(logits, dim=1)
        out.append((p if target is None else p[:, target]).cpu())
    if not out:
        return np.zeros((0, 2) if target is None else (0,), np.float32)
    return torch.cat(out).numpy()
