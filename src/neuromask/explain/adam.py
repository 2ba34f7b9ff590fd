"""Adam for a stack of independent masks, each with its own step count.

Session masks are optimised B at a time; when one stops early another session takes its
slot with a fresh state. ``torch.optim.Adam`` keeps one step count per tensor, so the
bias correction of a new slot would be wrong: here every slot has its own.

``scaling="mask"`` divides each slot's first moment by the root of the *mean* of its
second moment, one number per mask, instead of voxel by voxel: the step keeps the
gradient's relative size across voxels (a voxel with a tenth of the gradient moves a
tenth as far), while the overall scale of the loss, such as a CNN's logit scale, still
drops out. Per-voxel scaling gives a voxel of tiny but steady gradient the same step as
the most relevant one.
"""

from __future__ import annotations

import torch


class SlotAdam:
    """Adam (Kingma & Ba) over ``param`` of shape (B, ...), slot by slot."""

    def __init__(
        self,
        param: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        scaling: str = "voxel",
    ) -> None:
        self.param = param
        self.scaling = scaling
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = torch.zeros(param.shape[0], dtype=torch.int64, device=param.device)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, active: list[int] | None = None) -> None:
        """One in-place update of the slots listed in ``active`` (all slots by default)."""
        b1, b2 = self.betas
        slots = range(self.param.shape[0]) if active is None else active
        for s in slots:
            self.steps[s] += 1
            t = int(self.steps[s])
            g = grad[s]
            self.exp_avg[s].mul_(b1).add_(g, alpha=1 - b1)
            self.exp_avg_sq[s].mul_(b2).addcmul_(g, g, value=1 - b2)
            if self.scaling == "mask":
                rms = float(self.exp_avg_sq[s].mean().sqrt()) / (1 - b2**t) ** 0.5
                self.param[s].add_(self.exp_avg[s], alpha=-self.lr / (1 - b1**t) / (rms + self.eps))
                continue
            denom = (self.exp_avg_sq[s].sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
            self.param[s].addcdiv_(self.exp_avg[s], denom, value=-self.lr / (1 - b1**t))

    @torch.no_grad()
    def reset(self, slot: int) -> None:
        self.exp_avg[slot].zero_()
        self.exp_avg_sq[slot].zero_()
        self.steps[slot] = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "exp_avg": self.exp_avg.cpu(),
            "exp_avg_sq": self.exp_avg_sq.cpu(),
            "steps": self.steps.cpu(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])
