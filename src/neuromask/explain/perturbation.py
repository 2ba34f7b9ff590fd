"""Meaningful perturbation in 3D: optimised masks that stop a frozen CNN from recognising
a class (Fong & Vedaldi 2017, extended to 3D volumes as in the paper).

Used like a Captum attribution method (the model to the constructor, the images to
:meth:`MeaningfulPerturbation.attribute`)::

    explainer = MeaningfulPerturbation(model, mask_preset("group"))
    masks, result = explainer.attribute(images, target=1, validation=val_images)

``mode="group"`` trains one mask shared by all images (returned with a batch size of 1,
broadcastable against the inputs, :mod:`neuromask.explain.group`); ``mode="session"``
one mask per image (returned shaped like the inputs, :mod:`neuromask.explain.sessions`).
The result holds the raw masks, the history and every setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuromask.errors import NeuromaskError, ParameterError
from neuromask.explain.adam import SlotAdam
from neuromask.explain.config import MaskConfig
from neuromask.explain.objective import regularisers, score_and_gradient
from neuromask.explain.parametrisation import MaskGrid
from neuromask.explain.reference import HealthyReference
from neuromask.models.inference import Fill, class_probabilities, freeze


class MaskLossNaNError(NeuromaskError, FloatingPointError):
    """The masking loss became NaN or infinite; the last good mask was kept."""

    def __init__(self, message: str, result: PerturbationResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class PerturbationResult:
    """Everything a mask optimisation produced.

    ``masks``: thresholded (values above ``config.keep_above`` set to 1); ``raw_masks``:
    before thresholding. Group mode: (1, 1, X, Y, Z); session mode: (N, 1, X, Y, Z).
    ``history``: one row per epoch (group) or per session (session mode)."""

    masks: torch.Tensor
    raw_masks: torch.Tensor
    history: pd.DataFrame
    config: MaskConfig
    target: int
    mode: str
    best_epoch: int | list[int]
    stopped_because: str
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Group mode: the best mask's variables (coarse when ``config.upsample`` > 1), from
    #: which another optimisation can start.
    mask_variables: torch.Tensor | None = None
    #: Group mode with ``config.larger_areas``: each area tried, its mean masked
    #: P(target) and its epochs (:mod:`neuromask.explain.extremal`).
    areas_tried: list[dict[str, float | int]] = field(default_factory=list)
    #: The factor on the score (``config.score_normalisation``; 1 without it).
    score_scale: float = 1.0
    #: Under the score's floor with ``floor_above``: the mean masked P(target) of the
    #: mask found without it, and whether the floor was then applied.
    floor: dict[str, Any] | None = None
    #: Group mode with ``config.trace_depth`` > 0: whether the gradient trace was applied
    #: (a mask that deletes nothing gets none).
    traced: bool = False

    def settings(self) -> dict[str, Any]:
        from neuromask.config import to_mapping

        settings = {
            "mode": self.mode,
            "target": self.target,
            "mask": to_mapping(self.config),
            "best_epoch": self.best_epoch,
            "stopped_because": self.stopped_because,
        }
        if self.areas_tried:
            settings["areas_tried"] = self.areas_tried
        if self.config.score_normalisation != "none":
            settings["score_scale"] = self.score_scale
        if self.floor is not None:
            settings["floor"] = self.floor
        if self.mode == "group" and self.config.trace_depth > 0:
            settings["traced"] = self.traced
        return settings


def threshold(raw: torch.Tensor, keep_above: float) -> torch.Tensor:
    """Mask values above ``keep_above`` set to 1 (what is kept)."""
    return torch.where(raw > keep_above, torch.ones_like(raw), raw)


class MeaningfulPerturbation:
    """Optimise perturbation masks for a frozen classifier.

    The model is frozen in place: eval mode (BatchNorm statistics fixed, dropout off) and
    ``requires_grad=False`` on every parameter, so no weight gradient is computed.
    ``brain_mask`` (X, Y, Z, bool), when given and ``config.restrict_to_brain`` is set,
    keeps the mask at 1 outside the brain. ``reference``: for ``config.reference =
    "cn_mean"``, the image (X, Y, Z) that deleted voxels take (the mean GM map of the
    cognitively normal training sessions, :func:`cn_reference`); for ``"healthy"``, the
    CN training sessions (K, X, Y, Z) of :class:`~neuromask.explain.reference.HealthyReference`;
    with the default ``"constant"``, deleted voxels take ``config.mu``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: MaskConfig | None = None,
        *,
        device: str | torch.device | None = None,
        brain_mask: torch.Tensor | np.ndarray | None = None,
        reference: torch.Tensor | np.ndarray | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config or MaskConfig()
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.model = freeze(model, self.device)
        self.brain = None
        if brain_mask is not None:
            self.brain = torch.as_tensor(np.asarray(brain_mask, dtype=bool), device=self.device)
        self.progress = progress
        self.mu: Fill = self.config.mu
        if self.config.reference == "healthy":
            if reference is None:
                raise ParameterError(
                    "mask setting reference = 'healthy' needs the CN sessions: pass "
                    "reference= (K, X, Y, Z), the CN training sessions' GM maps"
                )
            self.mu = HealthyReference(reference, self.device)
        elif self.config.reference == "cn_mean":
            if reference is None:
                raise ParameterError(
                    "mask setting reference = 'cn_mean' needs the reference image: pass "
                    "reference= (the mean GM map of the CN training sessions)"
                )
            ref = torch.as_tensor(np.asarray(reference, dtype=np.float32), device=self.device)
            self.mu = ref.reshape(1, 1, *ref.shape[-3:])
        elif reference is not None:
            raise ParameterError(
                "a reference image was given, but mask setting reference is 'constant'; "
                "set reference = 'cn_mean' to use it"
            )
        self.grid_map = MaskGrid((1, 1, 1))
        #: The factor on the score of the mask being trained (score normalisation).
        self.score_scale = 1.0

    # ------------------------------------------------------------------ public API
    def attribute(
        self,
        inputs: torch.Tensor,
        target: int = 1,
        *,
        mode: str = "group",
        validation: torch.Tensor | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        after_epoch: Callable[[int], None] | None = None,
        on_mask_done: Callable[[int, torch.Tensor, dict[str, Any]], None] | None = None,
    ) -> tuple[torch.Tensor, PerturbationResult]:
        """Train masks for ``inputs`` (N, 1, X, Y, Z) against class ``target``.

        ``validation`` (group mode): images whose masking loss drives early stopping and
        the choice of the best mask; without it the training loss does. ``checkpoint``: a
        file written after every epoch (group mode) from which a rerun resumes.
        ``on_mask_done(i, raw_mask, record)`` (session mode) is called as soon as the mask
        of image ``i`` is final, so that a caller can save it and skip it after a restart.
        """
        from neuromask.explain.sessions import optimise_session_masks

        inputs = self._check_inputs(inputs, "inputs")
        brain = None
        if self.brain is not None and self.config.restrict_to_brain:
            brain = self.brain.reshape(1, 1, *self.brain.shape)
        self.grid_map = MaskGrid(tuple(inputs.shape[2:]), self.config.upsample, brain)
        if mode == "group":
            result = self._attribute_group(inputs, target, validation, checkpoint, after_epoch)
        elif mode == "session":
            if self.config.jitter:
                raise ParameterError(
                    "mask setting jitter applies to group masks only; set jitter = 0 for "
                    "session masks"
                )
            result = optimise_session_masks(self, inputs, target, on_mask_done)
        else:
            raise ParameterError(f"attribute: mode must be 'group' or 'session', got {mode!r}")
        return result.masks, result

    def _attribute_group(
        self,
        inputs: torch.Tensor,
        target: int,
        validation: torch.Tensor | None,
        checkpoint: str | os.PathLike[str] | None,
        after_epoch: Callable[[int], None] | None,
    ) -> PerturbationResult:
        """One mask for all of ``inputs``: the score's scale, then :meth:`group_stages`;
        under the score's floor with ``floor_above`` > 0, the stages run with the score
        as it is first, and again with the floor only when that mask does not fool the
        CNN (:func:`~neuromask.explain.score_scale.floor_retry`); then, with larger
        areas, both stages at each until the mask fools the CNN
        (:func:`~neuromask.explain.extremal.grow_area`)."""
        from neuromask.explain.extremal import grow_area
        from neuromask.explain.score_scale import floor_retry, score_scale

        if self.config.batch_size == 0:
            raise ParameterError(
                "mask setting batch_size = 0 (as many as memory holds) applies to "
                "session masks only: a group mask's batch changes its optimisation; "
                "set batch_size to 1 or more"
            )
        if validation is not None:
            validation = self._check_inputs(validation, "validation")
        floor = self.config.score_normalisation == "floor" and self.config.floor_above > 0
        self.score_scale = 1.0 if floor else score_scale(self, inputs, target)
        result = self.group_stages(inputs, target, validation, checkpoint, after_epoch)
        if floor:
            result = floor_retry(self, result, inputs, target, validation, checkpoint, after_epoch)
        if len(self.config.areas) > 1:
            done = len(result.history) + (result.floor or {}).get("epochs_without", 0)
            result = grow_area(
                self, result, inputs, target, validation,
                checkpoint=checkpoint, after_epoch=after_epoch, offset=done,
            )  # fmt: skip
        result.score_scale = self.score_scale
        return self._ranked(result, inputs, target)

    def _ranked(
        self, result: PerturbationResult, inputs: torch.Tensor, target: int
    ) -> PerturbationResult:
        """The final group mask with its halo (:mod:`neuromask.explain.halo`), then its
        gradient trace over ``inputs`` (:mod:`neuromask.explain.gradient_trace`), if it
        deletes anything (a value below ``keep_above``): the trace ranks what a mask keeps
        against what it deletes, and would turn a mask that found nothing into a gradient
        map. Session masks get neither, as they never get the fine stage: neither was
        measured on them."""
        from neuromask.explain.gradient_trace import sensitivity, with_trace
        from neuromask.explain.halo import with_halo

        sigma, depth, brain = self.config.halo_sigma, self.config.halo_depth, self.area_brain
        masks = with_halo(result.masks, sigma, depth, brain)
        raw = with_halo(result.raw_masks, sigma, depth, brain)
        if self.config.trace_depth > 0 and bool((masks < self.config.keep_above).any()):
            trace = sensitivity(self, inputs, masks, target)
            masks = with_trace(masks, trace, self.config.trace_depth)
            raw = with_trace(raw, trace, self.config.trace_depth)
            return replace(result, masks=masks, raw_masks=raw, traced=True)
        return replace(result, masks=masks, raw_masks=raw)

    def group_stages(
        self,
        inputs: torch.Tensor,
        target: int,
        validation: torch.Tensor | None,
        checkpoint: str | os.PathLike[str] | None,
        after_epoch: Callable[[int], None] | None,
    ) -> PerturbationResult:
        """The coarse stage, then the fine stage, at ``config.area`` with the current
        :attr:`score_scale`."""
        from neuromask.explain.group import optimise_group_mask

        result = optimise_group_mask(
            self, inputs, target, validation, checkpoint=checkpoint, after_epoch=after_epoch
        )
        if self.config.refines:
            from neuromask.explain.refine import refine_group_mask

            result = refine_group_mask(
                self,
                result,
                inputs,
                target,
                validation,
                checkpoint=checkpoint,
                after_epoch=after_epoch,
            )
        return result

    def probabilities(
        self,
        images: torch.Tensor,
        target: int = 1,
        masks: torch.Tensor | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """P(target) of each image, optionally perturbed by ``masks`` (one, or one per image)."""
        return class_probabilities(
            self.model,
            images,
            masks,
            target=target,
            mu=self.mu,
            batch_size=batch_size,
            device=self.device,
        )

    def group_step(
        self,
        mask: torch.Tensor,
        adam: SlotAdam,
        images: torch.Tensor,
        target: int,
        shift: tuple[int, int, int] | None = None,
        step: tuple[int, int] = (0, 0),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step of a shared mask (its variables, see
        :class:`~neuromask.explain.parametrisation.MaskGrid`) on a batch of images.

        ``shift``: voxels by which the images (and a reference image) are rolled against
        the mask (jitter). ``step``: (epoch, batch), which keys the draw of a healthy
        reference. Returns the size and smoothness terms, the per-image scores and the
        loss (before the step). A non-finite loss leaves the mask untouched."""
        cfg = self.config
        full = self.grid_map.full(mask)
        mu = self.fill_of(images, step=step)
        if shift is not None and any(shift):
            images = torch.roll(images, shift, dims=(2, 3, 4))
            if isinstance(mu, torch.Tensor):
                mu = torch.roll(mu, shift, dims=(2, 3, 4))
        score, _, score_grad = score_and_gradient(self.model, images, full, cfg, target, mu)
        score = score * self.score_scale
        size, smooth, grad = regularisers(full, cfg, self.area_indices)
        loss = size[0] + smooth[0] + score.mean()
        if torch.isfinite(loss):
            grad.add_(score_grad, alpha=self.score_scale / images.shape[0])
            adam.step(self.grid_map.pull_back(mask, grad))
            self.project(mask)
        return size, smooth, score, loss

    def fill_of(
        self,
        images: torch.Tensor,
        *,
        step: tuple[int, int] | None = None,
        indices: list[int] | None = None,
    ) -> float | torch.Tensor:
        """What the deleted voxels of ``images`` take: ``mu`` or the reference image, or
        for the healthy reference the sessions drawn for ``step`` (epoch, batch) of a
        group mask, or paired with the images' ``indices``."""
        mu = self.mu
        if isinstance(mu, HealthyReference):
            if indices is not None:
                return mu.paired(images, indices)
            return mu.drawn(images, self.config.seed, *(step or (0, 0)))
        assert not callable(mu)
        return mu

    @property
    def area_brain(self) -> torch.Tensor | None:
        """The voxels over which an area constraint counts (the brain, when restricted)."""
        return self.brain if self.config.restrict_to_brain else None

    @property
    def area_indices(self) -> torch.Tensor | None:
        """:attr:`area_brain` as flat indices (the regularisers' form), found once a brain."""
        brain = self.area_brain
        if brain is not None and getattr(self, "_indices_of", None) is not brain:
            self._indices_of, self._indices = brain, brain.reshape(-1).nonzero()[:, 0]
        return None if brain is None else self._indices

    @torch.no_grad()
    def project(self, masks: torch.Tensor) -> None:
        """Clamp masks (their variables) to [0, 1] and, with a brain mask, keep them at 1
        outside it (a coarse mask is kept at 1 there when upsampled)."""
        masks.clamp_(0.0, 1.0)
        if self.grid_map.is_identity and self.brain is not None and self.config.restrict_to_brain:
            masks.masked_fill_(~self.brain.expand_as(masks), 1.0)

    def _check_inputs(self, inputs: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 5 or inputs.shape[1] != 1:
            shape = (
                tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            )
            raise ParameterError(f"attribute: {name} must be a tensor (N, 1, X, Y, Z), got {shape}")
        if inputs.shape[0] == 0:
            raise ParameterError(f"attribute: {name} holds no image")
        mu = self.mu
        if isinstance(mu, HealthyReference) and mu.grid != tuple(inputs.shape[2:]):
            raise ParameterError(
                f"attribute: the healthy sessions {mu.grid} differ from the images' grid {tuple(inputs.shape[2:])}"
            )
        if isinstance(mu, torch.Tensor) and tuple(mu.shape[2:]) != tuple(inputs.shape[2:]):
            raise ParameterError(
                f"attribute: the reference image {tuple(mu.shape[2:])} differs from the images' grid {tuple(inputs.shape[2:])}"
            )
        if self.brain is not None and tuple(self.brain.shape) != tuple(inputs.shape[2:]):
            raise ParameterError(
                f"attribute: brain_mask {tuple(self.brain.shape)} differs from the images' grid {tuple(inputs.shape[2:])}"
            )
        return inputs
