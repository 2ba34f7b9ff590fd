"""How many session masks to optimise at once: the largest batch that the device's free
memory holds (mask setting ``batch_size = 0``, ``--batch-size auto``).

Session masks are independent (each has its own Adam slot and early stopping), so the
batch changes only the speed, never a mask. On a GPU a step's memory grows linearly with
the batch: the frozen CNN's weights and workspace are paid once, the activations of the
forward and input-backward passes once per image. Two short probes, at one and two images,
measure both; the batch is the largest that fits in ``headroom`` of the free memory.

On the CPU the batch is 1: measured on the development machine, a convolution's cost
grows linearly with the batch there, and 8 session masks at once ran at 0.89 times the
speed of one by one (README).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from neuromask.errors import ParameterError
from neuromask.explain.objective import regularisers, score_and_gradient

if TYPE_CHECKING:
    from neuromask.explain.perturbation import MeaningfulPerturbation

#: The largest automatic batch: beyond it a step takes long enough that the progress bar
#: and the resumable records (written as each mask ends) lag behind.
MAX_AUTO_BATCH = 64


def fit_batch_size(
    free_bytes: float,
    peak_of: Callable[[int], float],
    *,
    headroom: float = 0.8,
    cap: int = MAX_AUTO_BATCH,
) -> int:
    """The largest batch b (1 to ``cap``) with ``fixed + b * per_image <= headroom *
    free_bytes``, where ``peak_of(b)`` is a step's peak memory at batch b (bytes), probed
    at 1 and 2: per_image = peak(2) - peak(1), fixed = peak(1) - per_image."""
    if not (math.isfinite(free_bytes) and free_bytes > 0):
        raise ParameterError(f"free device memory must be > 0 bytes, got {free_bytes!r}")
    one, two = float(peak_of(1)), float(peak_of(2))
    per_image = max(two - one, 1.0)
    fixed = max(one - per_image, 0.0)
    fits = math.floor((headroom * free_bytes - fixed) / per_image)
    return int(min(max(fits, 1), cap))


def _cuda_step_peak(
    explainer: MeaningfulPerturbation, images: torch.Tensor, target: int
) -> Callable[[int], float]:
    """A function of b: the peak memory (bytes, above what was allocated before) of one
    session-mask step on ``b`` copies of the first image."""
    device = explainer.device

    def peak(b: int) -> float:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        x = images[:1].to(device, torch.float32).expand(b, *images.shape[1:]).contiguous()
        variables = explainer.grid_map.ones(b, device)
        masks = explainer.grid_map.full(variables)
        mu = explainer.fill_of(x, indices=list(range(b)))
        _, _, grad = score_and_gradient(explainer.model, x, masks, explainer.config, target, mu)
        regularisers(masks, explainer.config, explainer.area_indices)
        explainer.grid_map.pull_back(variables, grad)
        torch.cuda.synchronize(device)
        used = torch.cuda.max_memory_allocated(device) - before
        del x, variables, masks, mu, grad
        torch.cuda.empty_cache()
        return float(used)

    return peak


def session_batch_size(
    explainer: MeaningfulPerturbation,
    images: torch.Tensor,
    target: int,
    *,
    free_bytes: float | None = None,
    peak_of: Callable[[int], float] | None = None,
) -> int:
    """The automatic session-mask batch for ``explainer`` on ``images``: 1 on the CPU;
    on a CUDA device, :func:`fit_batch_size` of its free memory (what the driver reports
    free plus what PyTorch holds in its cache unused) and two probe steps. ``free_bytes``
    and ``peak_of`` replace the measurements (tests)."""
    device = explainer.device
    if peak_of is None:
        if device.type != "cuda":
            return 1
        peak_of = _cuda_step_peak(explainer, images, target)
    if free_bytes is None:
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        free_bytes = float(free + cached)
    return min(fit_batch_size(free_bytes, peak_of), images.shape[0])
