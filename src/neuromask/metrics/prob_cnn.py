"""prob_CNN: do two masks fool each other's CNN?

Mask m_A was trained for model A, mask m_B for model B. The metric for the ordered pair
(A, B) is the mean probability of the true class (AD) that model A gives to its own
validation AD images masked with m_B. Near 0, m_B fools A as well as m_A does: the masks
are similar for A. Near 1, they are not. The pair's value is the mean of both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from neuromask.models.inference import Fill, batched_logits

AD = 1


def masked_probability(
    model: torch.nn.Module,
    images: torch.Tensor,
    mask: torch.Tensor | np.ndarray,
    *,
    target: int = AD,
    mu: Fill = 1.0,
    batch_size: int = 8,
) -> float:
    """Mean P(target) that ``model`` gives to ``images`` (N, 1, X, Y, Z) masked with
    ``mask`` (X, Y, Z): m·X + (1 − m)·μ (μ: a constant, an image, or a healthy
    reference, :mod:`neuromask.explain.reference`)."""
    device = next(model.parameters()).device
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)
    m = m.reshape(1, 1, *m.shape[-3:])
    if tuple(m.shape[2:]) != tuple(images.shape[2:]):
        raise ValueError(
            f"mask grid {tuple(m.shape[2:])} differs from the images' grid {tuple(images.shape[2:])}"
        )
    total, count = 0.0, 0
    for logits in batched_logits(model, images, m, mu=mu, batch_size=batch_size, device=device):
        p = torch.softmax(logits, dim=1)[:, target]
        total += float(p.sum())
        count += logits.shape[0]
    return total / count


def prob_cnn_matrix(
    models: Sequence[torch.nn.Module],
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | np.ndarray],
    *,
    target: int = AD,
    mu: Fill | Sequence[Fill] = 1.0,
    batch_size: int = 8,
) -> np.ndarray:
    """P[a, b]: mean P(target) of model a on its images masked with mask b.

    ``models[i]``, ``images[i]`` (that model's validation AD images) and ``masks[i]`` (the
    mask trained for that model) belong together. The diagonal is each model on its own
    mask. ``mu``: one fill for all, or one per model (the healthy reference of each
    model's own CN training sessions).
    """
    fills: list[Fill] = list(mu) if isinstance(mu, list | tuple) else [cast(Fill, mu)] * len(models)
    if len(fills) != len(models):
        raise ValueError(f"prob_cnn needs one fill per model: got {len(fills)} for {len(models)}")
    if not len(models) == len(images) == len(masks):
        raise ValueError(
            f"prob_cnn needs one model and one image set per mask: got {len(models)} models, "
            f"{len(images)} image sets and {len(masks)} masks"
        )
    n = len(masks)
    matrix = np.empty((n, n), dtype=np.float64)
    for a in range(n):
        for b in range(n):
            matrix[a, b] = masked_probability(
                models[a], images[a], masks[b], target=target, mu=fills[a], batch_size=batch_size
            )
    return matrix


def symmetric_prob_cnn(matrix: np.ndarray) -> np.ndarray:
    """The pair values: the mean of both directions, (P[a, b] + P[b, a]) / 2."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return (matrix + matrix.T) / 2.0


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean over all pairs of distinct items of a square matrix (NaN for fewer than 2)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if n < 2:
        return float("nan")
    upper = np.triu_indices(n, k=1)
    return float(matrix[upper].mean())
