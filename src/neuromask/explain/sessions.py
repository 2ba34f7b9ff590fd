"""Session masks: one mask per image, ``batch_size`` of them optimised at once (one
forward and input-backward pass), each with its own early stopping; a slot whose mask is
final takes the next image."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from neuromask.explain.adam import SlotAdam
from neuromask.explain.early_stopping import EarlyStopping
from neuromask.explain.objective import regularisers, score_and_gradient
from neuromask.explain.perturbation import PerturbationResult, threshold
from neuromask.explain.score_scale import session_scales
from neuromask.progress import Bar

if TYPE_CHECKING:
    from neuromask.explain.perturbation import MeaningfulPerturbation

MaskDone = Callable[[int, torch.Tensor, dict[str, Any]], None]


@dataclass
class _Slot:
    """One image's mask under optimisation."""

    image: int
    stopping: EarlyStopping
    epoch: int = 0
    terms: dict[str, float] | None = None
    stopped: str = ""
    #: the factor on this image's score (score normalisation), set at its first step
    scale: float | None = None

    def record(self) -> dict[str, Any]:
        return {
            "epochs": self.epoch,
            "best_epoch": self.stopping.best_epoch,
            "final_loss": self.stopping.best,
            "stopped_because": self.stopped,
            "score_scale": self.scale,
            **{f"final_{k}": v for k, v in (self.terms or {}).items()},
        }


def _step(
    explainer: MeaningfulPerturbation,
    x: torch.Tensor,
    masks: torch.Tensor,
    slots: list[_Slot | None],
    target: int,
) -> tuple[list[int], dict[str, torch.Tensor], torch.Tensor]:
    """Scores, terms and gradient of the active slots' masks (before any update)."""
    active = [s for s, slot in enumerate(slots) if slot is not None]
    which = [slots[s].image for s in active]  # type: ignore[union-attr]
    images = x[which].to(explainer.device, torch.float32)
    variables = masks[active]
    current = explainer.grid_map.full(variables)
    mu = explainer.fill_of(images, indices=which)  # healthy: image i, CN session i mod K
    score, probability, score_grad = score_and_gradient(
        explainer.model, images, current, explainer.config, target, mu
    )
    fresh = [j for j, s in enumerate(active) if slots[s].scale is None]  # type: ignore[union-attr]
    for j, scale in session_scales(explainer, score_grad, fresh).items():
        slots[active[j]].scale = scale  # type: ignore[union-attr]
    scales = torch.tensor([slots[s].scale for s in active], device=score.device)  # type: ignore[union-attr]
    score = score * scales
    score_grad.mul_(scales.reshape(-1, *[1] * (score_grad.dim() - 1)))
    size, smooth, grad = regularisers(current, explainer.config, explainer.area_indices)
    grad.add_(score_grad)
    full_grad = torch.zeros_like(masks)
    full_grad[active] = explainer.grid_map.pull_back(variables, grad)
    terms = {
        "total": size + smooth + score,
        "size": size,
        "smoothness": smooth,
        "score": score,
        "probability": probability,
    }
    return active, terms, full_grad


def _track(
    slot: _Slot, loss: float, terms: dict[str, torch.Tensor], j: int, max_epochs: int
) -> bool:
    """Record one epoch of a slot; True when its mask is the best so far. Sets
    ``slot.stopped`` when the slot is done."""
    if not math.isfinite(loss):
        slot.stopped = f"nan_at_epoch_{slot.epoch}"
        return False
    improved = slot.stopping.update(loss, slot.epoch)
    if improved:
        slot.terms = {k: float(v[j]) for k, v in terms.items()}
    slot.epoch += 1
    if slot.stopping.should_stop:
        slot.stopped = "early_stopping"
    elif slot.epoch >= max_epochs:
        slot.stopped = "max_epochs"
    return improved


def optimise_session_masks(
    explainer: MeaningfulPerturbation,
    x: torch.Tensor,
    target: int,
    on_mask_done: MaskDone | None = None,
) -> PerturbationResult:
    """One mask per image of ``x``; ``on_mask_done(i, raw_mask, record)`` as each is final."""
    cfg = explainer.config
    n, spatial = x.shape[0], x.shape[2:]
    if cfg.batch_size == 0:  # automatic: what the device's free memory holds
        from neuromask.explain.batch_size import session_batch_size

        cfg = dataclasses.replace(cfg, batch_size=session_batch_size(explainer, x, target))
    n_slots = min(cfg.batch_size, n)
    masks = explainer.grid_map.ones(n_slots, explainer.device)
    adam = SlotAdam(masks, cfg.learning_rate, scaling=cfg.step_scaling)
    slots: list[_Slot | None] = [None] * n_slots
    best_masks = torch.ones((n, 1, *spatial))
    records: list[dict[str, Any]] = [{} for _ in range(n)]
    queue = list(range(n))
    with Bar(n, "session masks", enabled=explainer.progress) as bar:
        while True:
            for s in range(n_slots):
                if slots[s] is None and queue:
                    slots[s] = _Slot(queue.pop(0), EarlyStopping(cfg.patience, cfg.tolerance))
                    masks[s].fill_(1.0)
                    adam.reset(s)
            if all(slot is None for slot in slots):
                break
            active, terms, full_grad = _step(explainer, x, masks, slots, target)
            totals = terms["total"].detach().cpu().numpy()
            finished = []
            for j, s in enumerate(active):
                slot = slots[s]
                assert slot is not None
                if _track(slot, float(totals[j]), terms, j, cfg.max_epochs):
                    with torch.no_grad():
                        best_masks[slot.image] = explainer.grid_map.full(masks[s : s + 1])[0].cpu()
                if slot.stopped:
                    finished.append(s)
            adam.step(full_grad, [s for s in active if s not in finished])
            explainer.project(masks)
            for s in finished:
                slot = slots[s]
                assert slot is not None
                records[slot.image] = {**slot.record(), "batch_size": n_slots}
                if on_mask_done is not None:
                    on_mask_done(slot.image, best_masks[slot.image], records[slot.image])
                slots[s] = None
                bar.advance(1, f"last loss {slot.stopping.best:.4f}")
    history = pd.DataFrame(records)
    return PerturbationResult(
        threshold(best_masks, cfg.keep_above),
        best_masks,
        history,
        cfg,
        target,
        "session",
        history["best_epoch"].astype(int).tolist(),
        ",".join(sorted(set(history["stopped_because"]))),
    )
