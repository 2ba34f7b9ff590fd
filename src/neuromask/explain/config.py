"""Settings of mask optimisation, with the paper's presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from neuromask.errors import ParameterError

SCORES = ("probability", "log_probability", "logit")


@dataclass(frozen=True)
class MaskConfig:
    """Hyperparameters of the masking loss and of its optimisation.

    The loss of a mask m is ``lambda1 * sum |1 - m|^beta1 + lambda2 * sum ||grad m||_beta2^beta2
    + f(m * X + (1 - m) * mu)``, where f is the frozen CNN's score for the target class
    (``score``: softmax probability, log-probability or logit). Adam with ``learning_rate``
    minimises it; m stays in [0, 1].

    The defaults were chosen on synthetic cohorts with ground truth
    (``benchmarks/mask_localisation.py``), where the CNN is confident (P(AD) near 0.998):

    - ``score`` is the logit. Masks optimised on the probability or the log-probability
      never left m = 1: their per-voxel gradients, shrunk by the softmax's saturation,
      stayed below the size term's slope at m = 1. The logit's do not saturate.
    - ``lambda1 = lambda2 = 1e-3``. The paper's values (1e-4 and 1e-2, preset ``paper``)
      were set for a probability in [0, 1]; against a logit, their smoothness weight kept
      the mask to a few hundred scattered voxels. With 1e-3 and 1e-3, the five densest ROIs
      were all truly atrophied on both cohorts measured.

    ``restrict_to_brain`` (default on) keeps the mask at 1 outside a brain mask (the
    mask jobs derive it from the data: mean GM above 0.05, dilated by a voxel). With
    mu = 1, deleting background would add GM where there is none. On the same cohort, the
    restriction raised the share of atrophied ROIs among the five densest from 0.4 to 0.6.

    ``size_epsilon`` makes the size term finite and differentiable at m = 1 when
    beta1 < 1: it uses ``(|1 - m| + eps)^beta1 - eps^beta1``, which is 0 at m = 1 and
    whose slope there is ``beta1 * eps^(beta1 - 1)`` instead of infinity.

    Early stopping: an epoch whose monitored loss exceeds the best one by more than
    ``tolerance`` (relative) counts against ``patience``; after ``patience`` such epochs in
    a row the optimisation stops and the best mask is kept. Values above ``keep_above``
    are then set to 1.
    """

    beta1: float = 0.1
    beta2: float = 1.0
    lambda1: float = 1e-3
    lambda2: float = 1e-3
    learning_rate: float = 0.1
    mu: float = 1.0
    score: str = "logit"
    size_epsilon: float = 1e-2
    max_epochs: int = 150
    patience: int = 5
    tolerance: float = 0.05
    batch_size: int = 1
    keep_above: float = 0.95
    restrict_to_brain: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ParameterError:
            return ParameterError(
                f"mask setting {name} must be {expected}, got {getattr(self, name)!r}"
            )

        for name in ("beta1", "beta2", "learning_rate", "size_epsilon"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise bad(name, "> 0")
        for name in ("lambda1", "lambda2", "tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, ">= 0")
        if not math.isfinite(self.mu):
            raise bad("mu", "a finite number")
        if self.score not in SCORES:
            raise bad("score", f"one of {', '.join(SCORES)}")
        for name in ("max_epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise bad(name, "at least 1")
        if not 0 < self.keep_above <= 1:
            raise bad("keep_above", "in (0, 1]")


#: Presets. ``group``: the defaults, for group masks. ``paper``: the paper's group
#: setting (lambda1 1e-4, lambda2 1e-2). ``small-cohort``: the paper's early stopping for
#: the smaller independent cohort (patience 25, at most 300 epochs). ``session``: one
#: mask per session, with the paper's early stopping (no validation set, patience 200, at
#: most 5,000 epochs, tolerance 0.01) and the group defaults' weights. The paper
#: multiplies its group weights by 100 for sessions. Measured on the CNNs of two
#: synthetic cohorts, 100 times the defaults kept every session mask of one at its
#: all-ones start, and 10 times did so on the other; the defaults fooled both CNNs on
#: every session.
MASK_PRESETS: dict[str, MaskConfig] = {
    "group": MaskConfig(),
    "paper": MaskConfig(lambda1=1e-4, lambda2=1e-2),
    "small-cohort": MaskConfig(patience=25, max_epochs=300),
    "session": MaskConfig(patience=200, max_epochs=5000, tolerance=0.01),
}


def mask_preset(name: str, **overrides: Any) -> MaskConfig:
    """A preset by name, with fields replaced.

    >>> mask_preset("session").patience
    200
    """
    if name not in MASK_PRESETS:
        raise ParameterError(
            f"Unknown mask preset {name!r}; valid names: {', '.join(MASK_PRESETS)}"
        )
    return dataclasses.replace(MASK_PRESETS[name], **overrides) if overrides else MASK_PRESETS[name]
