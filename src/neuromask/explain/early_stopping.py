"""Early stopping with a relative tolerance, shared by group and session masks.

An epoch whose monitored loss beats the best so far resets the count. One that exceeds
the best by more than ``tolerance`` (relative to the best) counts against ``patience``;
one within the tolerance resets the count too. Training stops after ``patience`` bad
epochs in a row, and the best epoch's mask is kept.

>>> stopper = EarlyStopping(patience=2, tolerance=0.05)
>>> [stopper.update(loss, epoch) for epoch, loss in enumerate([1.0, 0.9, 1.0, 0.91, 1.2])]
[True, True, False, False, False]
>>> stopper.bad, stopper.should_stop
(1, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStopping:
    patience: int
    tolerance: float
    best: float = math.inf
    best_epoch: int = -1
    bad: int = 0

    def update(self, loss: float, epoch: int) -> bool:
        """Record the monitored ``loss`` of ``epoch``; True when it is the best so far."""
        if loss < self.best:
            self.best, self.best_epoch, self.bad = loss, epoch, 0
            return True
        if (loss - self.best) / abs(self.best) > self.tolerance:
            self.bad += 1
        else:
            self.bad = 0
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The state as a checkpoint stores it (``loss``, ``epoch``, ``bad``)."""
        return {"loss": self.best, "epoch": self.best_epoch, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["loss"])
        self.best_epoch = int(state["epoch"])
        self.bad = int(state["bad"])
