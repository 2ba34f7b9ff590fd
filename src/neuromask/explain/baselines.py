"""The attribution methods users would otherwise pick, on the same CNN, through Captum.

Captum is an optional dependency (``pip install 'neuromask[baselines]'``). Every method
returns one map per image, shaped like the inputs (N, 1, X, Y, Z), for the target class:

- ``saliency``: |d score / d x| (Simonyan et al.);
- ``grad_cam``: Grad-CAM on the last convolutional block, pooled over the three
  spatial axes, ReLU'd and upsampled trilinearly to the image grid;
- ``integrated_gradients``: from the baseline image μ (the masks' fill value) to x;
- ``occlusion``: a cube of ``window`` voxels set to μ, slid with stride ``window``;
- ``roi_ablation``: each atlas ROI set to μ in turn (one forward pass per ROI); the
  drop in score is spread over the ROI's voxels.

The last three accept a ``reference`` per image instead of μ: with each image's
healthy version max(X, H) (``neuromask.explain.reference``, the default masks' fill),
occlusion and ROI ablation put healthy tissue where they remove, and integrated
gradients integrate from the healthy version, so that a comparison with the masks
does not turn on the fill alone.

Signed maps (integrated gradients, occlusion, ablation) keep their sign; ``localize``
scores |a|.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from neuromask.errors import NeuromaskError, ParameterError

METHODS = ("saliency", "grad_cam", "integrated_gradients", "occlusion", "roi_ablation")
#: The methods that run the CNN on perturbed copies of each image.
PERTURBING = ("occlusion", "roi_ablation")
#: The methods that compare each image with a reference (μ, or ``reference``).
REFERENCED = ("integrated_gradients", "occlusion", "roi_ablation")

T = TypeVar("T")


class MissingExtraError(NeuromaskError, ImportError):
    """An optional dependency is not installed."""


def require_captum():
    try:
        import captum.attr as attr
    except ImportError:
        raise MissingExtraError(
            "The baseline attribution methods need Captum: pip install 'neuromask[baselines]'"
        ) from None
    return attr


def last_conv_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The layer Grad-CAM reads: the activation that follows the last Conv3d in its
    Sequential (past a BatchNorm), as in neuromask's CNN3D (``features``) and ClinicaDL's
    networks (``convolutions``), or else the last Conv3d itself."""
    conv3d = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    if not conv3d:
        raise ParameterError("grad_cam needs a model with a Conv3d layer")
    last = conv3d[-1]
    for sequential in model.modules():
        if not isinstance(sequential, torch.nn.Sequential):
            continue
        layers: list[torch.nn.Module] = list(sequential)
        at = next((i for i, m in enumerate(layers) if m is last), None)
        if at is None:
            continue
        for module in layers[at + 1 : at + 3]:
            if not isinstance(module, torch.nn.BatchNorm3d):
                return module
    return last


def attribute(
    method: str,
    model: torch.nn.Module,
    images: torch.Tensor,
    target: int = 1,
    *,
    mu: float = 1.0,
    reference: torch.Tensor | None = None,
    atlas_labels: np.ndarray | None = None,
    n_steps: int = 16,
    window: int = 4,
    batch_size: int = 8,
) -> torch.Tensor:
    """Attribution maps of ``method`` for ``images`` (N, 1, X, Y, Z).

    ``batch_size``: the most images in one forward pass of the CNN. Occlusion and ROI
    ablation perturb one image at a time, ``batch_size`` copies per pass (Captum puts
    that many copies of every image it is given in one pass: before round 19, 48 images
    for 6, a pass whose memory grew with the number of images).

    ``reference``: one reference image per image (shaped like ``images``), in place of
    the constant ``mu``, for the methods of :data:`REFERENCED`; e.g. each image's healthy
    version, ``HealthyReference(cn_sessions, device).paired(images, range(len(images)))``."""
    _check_arguments(method, images, reference, batch_size, window)
    attr = require_captum()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = images.float()
    out = []
    per_pass = 1 if method in PERTURBING else batch_size
    for start in range(0, x.shape[0], per_pass):
        batch = x[start : start + per_pass].clone().requires_grad_(method != "roi_ablation")
        fill: float | torch.Tensor = (
            mu if reference is None else reference[start : start + per_pass].float().to(x.device)
        )
        if method == "saliency":
            a = attr.Saliency(model).attribute(batch, target=target, abs=True)
        elif method == "integrated_gradients":
            a = attr.IntegratedGradients(model).attribute(
                batch,
                baselines=fill,
                target=target,
                n_steps=n_steps,
                internal_batch_size=batch_size,
            )
        elif method == "grad_cam":
            cam = attr.LayerGradCam(model, last_conv_layer(model)).attribute(
                batch, target=target, relu_attributions=True
            )
            a = attr.LayerAttribution.interpolate(
                cam, tuple(batch.shape[2:]), interpolate_mode="trilinear"
            )
        elif method == "occlusion":
            a = attr.Occlusion(model).attribute(
                batch,
                sliding_window_shapes=(1, window, window, window),
                strides=(1, window, window, window),
                baselines=fill,
                target=target,
                perturbations_per_eval=batch_size,
            )
        else:
            a = _roi_ablation(attr, model, batch, target, fill, atlas_labels, batch_size)
        out.append(a.detach().float())
    return torch.cat(out)


def _check_arguments(
    method: str,
    images: torch.Tensor,
    reference: torch.Tensor | None,
    batch_size: int,
    window: int,
) -> None:
    if method not in METHODS:
        raise ParameterError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}")
    if reference is not None:
        if method not in REFERENCED:
            raise ParameterError(
                f"{method} takes no reference; reference applies to {', '.join(REFERENCED)}"
            )
        if tuple(reference.shape) != tuple(images.shape):
            raise ParameterError(
                f"reference shape {tuple(reference.shape)} differs from the images' "
                f"{tuple(images.shape)}"
            )
    if batch_size < 1 or (method == "occlusion" and window < 1):
        name, value = ("batch_size", batch_size) if batch_size < 1 else ("window", window)
        raise ParameterError(f"{name} must be at least 1, got {value}")


def _roi_ablation(
    attr,
    model: torch.nn.Module,
    batch: torch.Tensor,
    target: int,
    fill: float | torch.Tensor,
    atlas_labels: np.ndarray | None,
    batch_size: int,
) -> torch.Tensor:
    """Each atlas ROI of ``batch`` (one image) set to ``fill`` in turn; the drop in score
    spread over the ROI's voxels."""
    if atlas_labels is None:
        raise ParameterError("roi_ablation needs the atlas labels on the image grid")
    labels = torch.as_tensor(np.asarray(atlas_labels, dtype=np.int64))
    if tuple(labels.shape) != tuple(batch.shape[2:]):
        raise ParameterError(
            f"atlas grid {tuple(labels.shape)} differs from the images' {tuple(batch.shape[2:])}"
        )
    with torch.no_grad():
        a = attr.FeatureAblation(model).attribute(
            batch,
            target=target,
            baselines=fill,
            feature_mask=labels[None, None].expand_as(batch),
            perturbations_per_eval=batch_size,
        )
    # FeatureAblation gives every voxel of a ROI the ROI's drop; spread it.
    counts = torch.bincount(labels.ravel()).float()
    a = a / counts[labels].clamp_min(1)[None, None]
    a[:, :, labels == 0] = 0.0
    return a


@dataclass
class Cost:
    seconds: float
    peak_memory_mb: float


def measure(fn: Callable[[], T]) -> tuple[T, Cost]:
    """Run ``fn``; its wall time and peak memory above the start (CUDA: allocated
    memory; CPU: the process's resident set, sampled every 5 ms; NaN where unknown)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        tic = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - tic
        return result, Cost(seconds, (torch.cuda.max_memory_allocated() - base) / 2**20)
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * page
        except OSError:
            return float("nan")

    # Memory freed earlier but kept by the allocator (neuromask.runtime.tune_allocator)
    # would hide this call's own use: hand it back first.
    from neuromask.runtime import release_free_memory

    release_free_memory()
    start = rss()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    tic = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - tic
        done.set()
        thread.join()
    return result, Cost(seconds, (max(peak[0], rss()) - start) / 2**20)
