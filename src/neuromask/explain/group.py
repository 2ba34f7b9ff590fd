"""Group masks: one mask shared by many images, trained in mini-batches over epochs, with
early stopping on a validation set (or the training loss) and a checkpoint per epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd
import torch

from neuromask.errors import ParameterError
from neuromask.explain.adam import SlotAdam
from neuromask.explain.early_stopping import EarlyStopping
from neuromask.explain.objective import class_score, regularisers
from neuromask.explain.perturbation import MaskLossNaNError, PerturbationResult, threshold
from neuromask.io.checkpoint import load_checkpoint, save_checkpoint, unreadable
from neuromask.models.inference import batched_logits
from neuromask.progress import Bar

if TYPE_CHECKING:
    from neuromask.explain.config import MaskConfig
    from neuromask.explain.perturbation import MeaningfulPerturbation

TERMS = ("size", "smoothness", "score", "total")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders the images of ``epoch`` (resumable: keyed on the epoch)."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    )


def jitter_shifts(
    jitter: int, n_batches: int, seed: int, epoch: int
) -> list[tuple[int, int, int] | None]:
    """One random shift per mini-batch of ``epoch``, each axis uniform in
    [-jitter, jitter] voxels, from a generator keyed on (seed, epoch) (resumable); no
    shift at all when ``jitter`` is 0."""
    if jitter == 0:
        return [None] * n_batches
    rng = np.random.default_rng([seed, epoch, 11])
    draws = rng.integers(-jitter, jitter + 1, size=(n_batches, 3))
    return [(int(a), int(b), int(c)) for a, b, c in draws]


@dataclass
class GroupState:
    """A group mask under optimisation: what a checkpoint holds."""

    mask: torch.Tensor
    adam: SlotAdam
    stopping: EarlyStopping
    best_mask: torch.Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0

    def save(self, path: Path, n_images: int) -> None:
        """Write the state (atomically) after an epoch."""
        state = {
            "shape": list(self.mask.shape),
            "n_images": n_images,
            "epoch": self.start_epoch - 1,
            "mask": self.mask.cpu(),
            "adam": self.adam.state_dict(),
            "best_mask": self.best_mask.cpu(),
            "history": self.history,
            "best": self.stopping.state_dict(),
        }
        save_checkpoint(state, path)

    def load(self, path: Path, n_images: int) -> None:
        state = load_checkpoint(path)
        if state.get("shape") != list(self.mask.shape) or state.get("n_images") != n_images:
            raise ParameterError(
                f"Checkpoint {path} belongs to another mask job; remove it to start over."
            )
        try:
            self.mask.copy_(state["mask"])
            self.adam.load_state_dict(state["adam"])
            self.best_mask.copy_(state["best_mask"])
            self.history = list(state["history"])
            self.stopping.load_state_dict(state["best"])
            self.start_epoch = int(state["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise unreadable(path, "lacks part of a group mask's state") from None


def evaluate_group_mask(
    explainer: MeaningfulPerturbation, images: torch.Tensor, mask: torch.Tensor, target: int
) -> dict[str, float]:
    """Masking loss of a group mask over a set of images (mean score) and mean P(target)."""
    cfg = explainer.config
    scores, probabilities = [], []
    mask = explainer.grid_map.full(mask)
    for logits in batched_logits(
        explainer.model, images, mask, mu=explainer.mu, device=explainer.device
    ):
        scores.append(class_score(logits, target, cfg.score, cfg.margin).cpu())
        probabilities.append(torch.softmax(logits, dim=1)[:, target].cpu())
    with torch.no_grad():
        size_t, smooth_t, _ = regularisers(
            mask, cfg, explainer.area_indices
        )  # once: the mask is shared
    size, smooth = float(size_t[0]), float(smooth_t[0])
    score = float(torch.cat(scores).mean()) * explainer.score_scale
    return {
        "size": size,
        "smoothness": smooth,
        "score": score,
        "total": size + smooth + score,
        "probability": float(torch.cat(probabilities).mean()),
    }


def _train_epoch(
    explainer: MeaningfulPerturbation, state: GroupState, x: torch.Tensor, target: int, epoch: int
) -> dict[str, float] | None:
    """One pass over the images in mini-batches; the mean terms, or None on a NaN loss."""
    cfg = explainer.config
    n = x.shape[0]
    order = torch.randperm(n, generator=epoch_generator(cfg.seed, epoch))
    sums = dict.fromkeys(TERMS, 0.0)
    seen = 0
    batches = [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    label = f"mask epoch {epoch + 1}/{cfg.max_epochs}"
    shifts = jitter_shifts(cfg.jitter, len(batches), cfg.seed, epoch)
    with Bar(len(batches), label, enabled=explainer.progress) as bar:
        for b, idx in enumerate(batches):
            images = x[idx].to(explainer.device, torch.float32, non_blocking=True)
            size, smooth, score, loss = explainer.group_step(
                state.mask, state.adam, images, target, shifts[b], (epoch, b)
            )
            if not torch.isfinite(loss):
                return None
            sums["size"] += size[0].item() * len(idx)
            sums["smoothness"] += smooth[0].item() * len(idx)
            sums["score"] += score.sum().item()
            sums["total"] += loss.item() * len(idx)
            seen += len(idx)
            bar.advance(1, f"loss {sums['total'] / seen:.4f}")
    return {f"train_{k}": v / n for k, v in sums.items()}


def judged_epoch(config: MaskConfig, epoch: int) -> bool:
    """Whether a group mask is judged after ``epoch`` (0-based) of a stage of
    ``config.max_epochs`` epochs: after every ``config.validate_every``-th epoch and after
    the stage's last. Only judged epochs pay for the validation pass (without a
    validation set, the pass over the training images for their P(target)), count
    for early stopping and may give the mask that is kept."""
    return (epoch + 1) % config.validate_every == 0 or epoch + 1 >= config.max_epochs


def _monitor(
    explainer: MeaningfulPerturbation,
    state: GroupState,
    row: dict[str, Any],
    x: torch.Tensor,
    validation: torch.Tensor | None,
    target: int,
) -> float:
    """Complete the epoch's history row; return the loss that early stopping watches."""
    monitored = row["train_total"]
    full = explainer.grid_map.full(state.mask)
    if validation is not None:
        val = evaluate_group_mask(explainer, validation, state.mask, target)
        row.update({f"validation_{k}": v for k, v in val.items()})
        monitored = val["total"]
    else:
        row["train_probability"] = float(np.mean(explainer.probabilities(x, target, full)))
    row["fraction_below_keep"] = float((full < explainer.config.keep_above).float().mean())
    return monitored


def optimise_group_mask(
    explainer: MeaningfulPerturbation,
    x: torch.Tensor,
    target: int,
    validation: torch.Tensor | None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    after_epoch: Callable[[int], None] | None = None,
    initial: torch.Tensor | None = None,
) -> PerturbationResult:
    """Train one mask for all of ``x``; resume from ``checkpoint`` when it exists.

    ``initial``: the mask's variables to start from (a previous result's
    ``mask_variables``) instead of all ones."""
    cfg = explainer.config
    mask = explainer.grid_map.ones(1, explainer.device)
    if initial is not None:
        if tuple(initial.shape) != tuple(mask.shape):
            raise ParameterError(
                f"initial mask {tuple(initial.shape)} does not match the mask's variables "
                f"{tuple(mask.shape)}"
            )
        mask.copy_(initial)
    state = GroupState(
        mask,
        SlotAdam(mask, cfg.learning_rate, scaling=cfg.step_scaling),
        EarlyStopping(cfg.patience, cfg.tolerance),
        mask.detach().clone(),
    )
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state.load(ckpt, x.shape[0])
    stopped = "early_stopping" if state.stopping.should_stop else "max_epochs"
    for epoch in range(state.start_epoch, cfg.max_epochs):
        if state.stopping.should_stop:
            break
        terms = _train_epoch(explainer, state, x, target, epoch)
        row: dict[str, Any] = {"epoch": epoch, **(terms or {})}
        if terms is None:
            _raise_nan(explainer, state, target, epoch)
        if judged_epoch(cfg, epoch):
            monitored = _monitor(explainer, state, row, x, validation, target)
            if not math.isfinite(monitored):
                _raise_nan(explainer, state, target, epoch)
            if state.stopping.update(monitored, epoch):
                state.best_mask = state.mask.detach().clone()
        state.history.append(row)
        if state.stopping.should_stop:
            stopped = "early_stopping"
        state.start_epoch = epoch + 1
        if ckpt is not None:
            state.save(ckpt, x.shape[0])
        if after_epoch is not None:
            after_epoch(epoch)
    return _result(explainer, state, target, stopped)


def _result(
    explainer: MeaningfulPerturbation, state: GroupState, target: int, stopped: str
) -> PerturbationResult:
    with torch.no_grad():
        raw = explainer.grid_map.full(state.best_mask.detach()).cpu()
    return PerturbationResult(
        threshold(raw, explainer.config.keep_above),
        raw,
        pd.DataFrame(state.history),
        explainer.config,
        target,
        "group",
        state.stopping.best_epoch,
        stopped,
        mask_variables=state.best_mask.detach().cpu().clone(),
    )


def _raise_nan(
    explainer: MeaningfulPerturbation, state: GroupState, target: int, epoch: int
) -> NoReturn:
    result = _result(explainer, state, target, f"nan_at_epoch_{epoch}")
    raise MaskLossNaNError(
        f"The masking loss became NaN or infinite at epoch {epoch + 1}; optimisation stopped "
        f"and the last good mask (epoch {state.stopping.best_epoch + 1}) was kept.",
        result,
    )
