"""What a training run keeps between epochs, and checkpoints: the epochs selected so far
and the model with its optimiser."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuromask.io.checkpoint import load_checkpoint, save_checkpoint, unreadable
from neuromask.train.checkpoint import cpu_state


@dataclass
class Selection:
    """The epochs selected so far: the best validation balanced accuracy (ties to the
    lower validation loss) and the lowest validation loss, with the count of epochs since
    the latter (early stopping)."""

    ba: float = -1.0
    ba_epoch: int = -1
    ba_loss: float = float("inf")
    loss: float = float("inf")
    loss_epoch: int = -1
    since_best_loss: int = 0

    def update(self, epoch: int, ba: float, loss: float) -> tuple[bool, bool]:
        """Record an epoch; (is it the best by accuracy, is it the best by loss)."""
        best_ba = ba > self.ba or (ba == self.ba and loss < self.ba_loss)
        if best_ba:
            self.ba, self.ba_epoch, self.ba_loss = ba, epoch, loss
        best_loss = loss < self.loss
        if best_loss:
            self.loss, self.loss_epoch, self.since_best_loss = loss, epoch, 0
        else:
            self.since_best_loss += 1
        return best_ba, best_loss


@dataclass
class RunState:
    """A run in progress: the model, its optimiser and what is kept of its epochs."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    selection: Selection
    best_ba_state: dict[str, torch.Tensor]
    best_loss_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    resumed: bool = False

    def save(self, path: Path, epoch: int) -> None:
        save_checkpoint(
            {
                "epoch": epoch,
                "model": cpu_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "history": self.history,
                "best": asdict(self.selection),
                "best_ba_state": self.best_ba_state,
                "best_loss_state": self.best_loss_state,
            },
            path,
        )

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.history = list(state["history"])
            self.selection = Selection(**state["best"])
            self.best_ba_state = state["best_ba_state"]
            self.best_loss_state = state["best_loss_state"]
            self.start_epoch = int(state["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise unreadable(path, "lacks part of a training run's state") from None
        self.resumed = True
