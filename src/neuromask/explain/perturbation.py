"""Meaningful perturbation in 3D: optimised masks that stop a frozen CNN from recognising
a class (Fong & Vedaldi 2017, extended to 3D volumes as in the paper).

Used like a Captum attribution method: the model goes to the constructor, the images to
:meth:`MeaningfulPerturbation.attribute`::

    explainer = MeaningfulPerturbation(model, mask_preset("group"))
    masks, result = explainer.attribute(images, target=1, validation=val_images)

``mode="group"`` trains one mask shared by all images (returned with a batch size of 1,
broadcastable against the inputs); ``mode="session"`` trains one mask per image (returned
shaped like the inputs). The result holds the raw masks, the history and every setting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuromask.errors import NeuromaskError, ParameterError
from neuromask.explain.adam import SlotAdam
from neuromask.explain.config import MaskConfig
from neuromask.explain.objective import class_score, perturb, regularisers, score_and_gradient
from neuromask.progress import Bar


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
    ``history``: one row per epoch (group) or per session (session mode).
    """

    masks: torch.Tensor
    raw_masks: torch.Tensor
    history: pd.DataFrame
    config: MaskConfig
    target: int
    mode: str
    best_epoch: int | list[int]
    stopped_because: str
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)

    def settings(self) -> dict[str, Any]:
        from neuromask.config import to_mapping

        return {
            "mode": self.mode,
            "target": self.target,
            "mask": to_mapping(self.config),
            "best_epoch": self.best_epoch,
            "stopped_because": self.stopped_because,
        }


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    )


class MeaningfulPerturbation:
    """Optimise perturbation masks for a frozen classifier.

    The model is frozen in place: eval mode (BatchNorm statistics fixed, dropout off) and
    ``requires_grad=False`` on every parameter, so no weight gradient is computed.
    ``brain_mask`` (X, Y, Z, bool), when given and ``config.restrict_to_brain`` is set,
    keeps the mask at 1 outside the brain.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: MaskConfig | None = None,
        *,
        device: str | torch.device | None = None,
        brain_mask: torch.Tensor | np.ndarray | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config or MaskConfig()
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.model = model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.brain = None
        if brain_mask is not None:
            self.brain = torch.as_tensor(np.asarray(brain_mask, dtype=bool), device=self.device)
        self.progress = progress

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
        inputs = self._check_inputs(inputs, "inputs")
        if mode == "group":
            if validation is not None:
                validation = self._check_inputs(validation, "validation")
            result = self._group(inputs, target, validation, checkpoint, after_epoch)
        elif mode == "session":
            result = self._sessions(inputs, target, on_mask_done)
        else:
            raise ParameterError(f"attribute: mode must be 'group' or 'session', got {mode!r}")
        return result.masks, result

    def probabilities(
        self,
        images: torch.Tensor,
        target: int = 1,
        masks: torch.Tensor | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """P(target) of each image, optionally perturbed by ``masks`` (one, or one per image)."""
        out = []
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start : start + batch_size].to(self.device, torch.float32)
                if masks is not None:
                    m = masks if masks.shape[0] == 1 else masks[start : start + batch_size]
                    m = m.to(self.device)
                    x = m * x + (1 - m) * self.config.mu
                out.append(torch.softmax(self.model(x).float(), 1)[:, target].cpu())
        return torch.cat(out).numpy()

    # ------------------------------------------------------------------ group masks
    def _group(self, x, target, validation, checkpoint, after_epoch) -> PerturbationResult:
        cfg = self.config
        shape = (1, 1, *x.shape[2:])
        mask = torch.ones(shape, device=self.device)
        adam = SlotAdam(mask, cfg.learning_rate)
        history: list[dict[str, Any]] = []
        best = {"loss": math.inf, "epoch": -1, "bad": 0}
        best_mask = mask.detach().clone()
        start = 0
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if ckpt is not None and ckpt.is_file():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            if state["shape"] != list(shape) or state["n_images"] != x.shape[0]:
                raise ParameterError(
                    f"Checkpoint {ckpt} belongs to another mask job; remove it to start over."
                )
            mask.copy_(state["mask"])
            adam.load_state_dict(state["adam"])
            best_mask.copy_(state["best_mask"])
            history, best, start = (
                list(state["history"]),
                dict(state["best"]),
                int(state["epoch"]) + 1,
            )

        stopped = "max_epochs"
        if best["bad"] >= cfg.patience:
            stopped = "early_stopping"
        n = x.shape[0]
        for epoch in range(start, cfg.max_epochs):
            if best["bad"] >= cfg.patience:
                break
            order = torch.randperm(n, generator=epoch_generator(cfg.seed, epoch))
            sums = {"size": 0.0, "smoothness": 0.0, "score": 0.0, "total": 0.0}
            seen = 0
            batches = [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
            with Bar(
                len(batches), f"mask epoch {epoch + 1}/{cfg.max_epochs}", enabled=self.progress
            ) as bar:
                for idx in batches:
                    images = x[idx].to(self.device, torch.float32, non_blocking=True)
                    size, smooth, score, loss = self.group_step(mask, adam, images, target)
                    if not torch.isfinite(loss):
                        return self._nan_group(best_mask, history, best, target, epoch)
                    sums["size"] += size[0].item() * len(idx)
                    sums["smoothness"] += smooth[0].item() * len(idx)
                    sums["score"] += score.sum().item()
                    sums["total"] += loss.item() * len(idx)
                    seen += len(idx)
                    bar.advance(1, f"loss {sums['total'] / seen:.4f}")
            row = {"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()}}
            monitored = row["train_total"]
            if validation is not None:
                val = self._evaluate(validation, mask, target)
                row.update({f"validation_{k}": v for k, v in val.items()})
                monitored = val["total"]
            else:
                row["train_probability"] = float(np.mean(self.probabilities(x, target, mask)))
            row["fraction_below_keep"] = float((mask < cfg.keep_above).float().mean())
            if not math.isfinite(monitored):
                return self._nan_group(best_mask, history, best, target, epoch)
            history.append(row)
            if monitored < best["loss"]:
                best.update(loss=monitored, epoch=epoch, bad=0)
                best_mask = mask.detach().clone()
            elif (monitored - best["loss"]) / abs(best["loss"]) > cfg.tolerance:
                best["bad"] += 1
            else:
                best["bad"] = 0
            if best["bad"] >= cfg.patience:
                stopped = "early_stopping"
            if ckpt is not None:
                _save_state(
                    ckpt,
                    {
                        "shape": list(shape),
                        "n_images": n,
                        "epoch": epoch,
                        "mask": mask.cpu(),
                        "adam": adam.state_dict(),
                        "best_mask": best_mask.cpu(),
                        "history": history,
                        "best": best,
                    },
                )
            if after_epoch is not None:
                after_epoch(epoch)
        return self._group_result(best_mask, history, best, target, stopped)

    def group_step(self, mask: torch.Tensor, adam: SlotAdam, images: torch.Tensor, target: int):
        """One optimisation step of a shared mask on a batch of images.

        Returns the size and smoothness terms, the per-image scores and the loss (before
        the step). A non-finite loss leaves the mask untouched.
        """
        cfg = self.config
        score, _, score_grad = score_and_gradient(self.model, images, mask, cfg, target)
        size, smooth, grad = regularisers(mask, cfg)
        loss = size[0] + smooth[0] + score.mean()
        if torch.isfinite(loss):
            grad.add_(score_grad, alpha=1.0 / images.shape[0])
            adam.step(grad)
            self._project(mask)
        return size, smooth, score, loss

    def _evaluate(self, images: torch.Tensor, mask: torch.Tensor, target: int) -> dict[str, float]:
        """Masking loss of a group mask over a set of images (mean score) and mean P(target)."""
        cfg = self.config
        scores, probabilities = [], []
        with torch.no_grad():
            for start in range(0, images.shape[0], 8):
                batch = images[start : start + 8].to(self.device, torch.float32)
                logits = self.model(perturb(batch, mask, cfg.mu))
                scores.append(class_score(logits, target, cfg.score).cpu())
                probabilities.append(torch.softmax(logits.float(), dim=1)[:, target].cpu())
            size_t, smooth_t, _ = regularisers(mask, cfg)  # once: the mask is shared
            size, smooth = float(size_t[0]), float(smooth_t[0])
        score = float(torch.cat(scores).mean())
        return {
            "size": size,
            "smoothness": smooth,
            "score": score,
            "total": size + smooth + score,
            "probability": float(torch.cat(probabilities).mean()),
        }

    def _group_result(self, best_mask, history, best, target, stopped) -> PerturbationResult:
        raw = best_mask.detach().cpu()
        masks = torch.where(raw > self.config.keep_above, torch.ones_like(raw), raw)
        return PerturbationResult(
            masks,
            raw,
            pd.DataFrame(history),
            self.config,
            target,
            "group",
            int(best["epoch"]),
            stopped,
        )

    def _nan_group(self, best_mask, history, best, target, epoch) -> PerturbationResult:
        result = self._group_result(best_mask, history, best, target, f"nan_at_epoch_{epoch}")
        raise MaskLossNaNError(
            f"The masking loss became NaN or infinite at epoch {epoch + 1}; optimisation stopped and "
            f"the last good mask (epoch {best['epoch'] + 1}) was kept.",
            result,
        )

    # ------------------------------------------------------------------ session masks
    def _sessions(self, x: torch.Tensor, target: int, on_mask_done=None) -> PerturbationResult:
        """One mask per image, ``batch_size`` optimised at once, each with its own early
        stopping; a finished slot takes the next image."""
        cfg = self.config
        n, spatial = x.shape[0], x.shape[2:]
        slots = min(cfg.batch_size, n)
        masks = torch.ones((slots, 1, *spatial), device=self.device)
        adam = SlotAdam(masks, cfg.learning_rate)
        slot_image = [-1] * slots
        slot_state: list[dict[str, Any]] = [{} for _ in range(slots)]
        best_masks = torch.ones((n, 1, *spatial))
        records: list[dict[str, Any] | None] = [None] * n
        queue = list(range(n))
        with Bar(n, "session masks", enabled=self.progress) as bar:
            while True:
                for s in range(slots):
                    if slot_image[s] < 0 and queue:
                        slot_image[s] = queue.pop(0)
                        masks[s].fill_(1.0)
                        adam.reset(s)
                        slot_state[s] = {
                            "best": math.inf,
                            "best_epoch": -1,
                            "bad": 0,
                            "epoch": 0,
                            "terms": None,
                        }
                active = [s for s in range(slots) if slot_image[s] >= 0]
                if not active:
                    break
                images = x[[slot_image[s] for s in active]].to(self.device, torch.float32)
                current = masks[active]
                score, probability, score_grad = score_and_gradient(
                    self.model, images, current, cfg, target
                )
                size, smooth, grad = regularisers(current, cfg)
                grad.add_(score_grad)
                full_grad = torch.zeros_like(masks)
                full_grad[active] = grad
                terms = {
                    "total": size + smooth + score,
                    "size": size,
                    "smoothness": smooth,
                    "score": score,
                    "probability": probability,
                }
                totals = terms["total"].detach().cpu().numpy()
                finished = []
                for j, s in enumerate(active):
                    st = slot_state[s]
                    loss = float(totals[j])
                    if not math.isfinite(loss):
                        st["stopped"] = f"nan_at_epoch_{st['epoch']}"
                        finished.append(s)
                        continue
                    if loss < st["best"]:
                        st.update(
                            best=loss,
                            best_epoch=st["epoch"],
                            bad=0,
                            terms={k: float(v[j]) for k, v in terms.items()},
                        )
                        best_masks[slot_image[s]] = current[j].cpu()
                    elif (loss - st["best"]) / abs(st["best"]) > cfg.tolerance:
                        st["bad"] += 1
                    else:
                        st["bad"] = 0
                    st["epoch"] += 1
                    if st["bad"] >= cfg.patience:
                        st["stopped"] = "early_stopping"
                        finished.append(s)
                    elif st["epoch"] >= cfg.max_epochs:
                        st["stopped"] = "max_epochs"
                        finished.append(s)
                adam.step(full_grad, [s for s in active if s not in finished])
                self._project(masks)
                for s in finished:
                    st = slot_state[s]
                    records[slot_image[s]] = {
                        "epochs": st["epoch"],
                        "best_epoch": st["best_epoch"],
                        "final_loss": st["best"],
                        "stopped_because": st["stopped"],
                        **{f"final_{k}": v for k, v in (st["terms"] or {}).items()},
                    }
                    if on_mask_done is not None:
                        on_mask_done(
                            slot_image[s], best_masks[slot_image[s]], records[slot_image[s]]
                        )
                    slot_image[s] = -1
                    bar.advance(1, f"last loss {st['best']:.4f}")
        raw = best_masks
        thresholded = torch.where(raw > cfg.keep_above, torch.ones_like(raw), raw)
        history = pd.DataFrame(records)
        reasons = set(history["stopped_because"])
        return PerturbationResult(
            thresholded,
            raw,
            history,
            cfg,
            target,
            "session",
            history["best_epoch"].astype(int).tolist(),
            ",".join(sorted(reasons)),
        )

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def _project(self, masks: torch.Tensor) -> None:
        masks.clamp_(0.0, 1.0)
        if self.brain is not None and self.config.restrict_to_brain:
            masks.masked_fill_(~self.brain.expand_as(masks), 1.0)

    def _check_inputs(self, inputs: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 5 or inputs.shape[1] != 1:
            shape = (
                tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            )
            raise ParameterError(f"attribute: {name} must be a tensor (N, 1, X, Y, Z), got {shape}")
        if inputs.shape[0] == 0:
            raise ParameterError(f"attribute: {name} holds no image")
        if self.brain is not None and tuple(self.brain.shape) != tuple(inputs.shape[2:]):
            raise ParameterError(
                f"attribute: brain_mask {tuple(self.brain.shape)} differs from the images' grid {tuple(inputs.shape[2:])}"
            )
        return inputs


def _save_state(path: Path, state: dict[str, Any]) -> None:
    from neuromask.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
