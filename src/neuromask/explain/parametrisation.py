"""How the optimised variables become a mask on the image grid.

With ``upsample`` f = 1 the variables are the mask itself. With f > 1 they form a coarse
mask, f times fewer voxels along each axis (rounded up), which is upsampled trilinearly
to the images' grid, cropped to it, and kept at 1 outside the brain: each variable then
moves a smooth patch of about f voxels, so that single voxels can no longer be deleted
one by one (Fong & Vedaldi 2017 optimise a 28 x 28 mask for 224 x 224 images, f = 8).
The loss is computed on the full-resolution mask; its gradient reaches the coarse
variables through the adjoint of the upsampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class MaskGrid:
    """The map from optimised variables (``(N, 1, *coarse_shape)``) to masks on ``grid``."""

    def __init__(
        self, grid: tuple[int, ...], factor: int = 1, brain: torch.Tensor | None = None
    ) -> None:
        self.grid = tuple(int(n) for n in grid)
        self.factor = int(factor)
        self.brain = brain
        self.coarse_shape = tuple(math.ceil(n / self.factor) for n in self.grid)

    @property
    def is_identity(self) -> bool:
        return self.factor == 1

    def ones(self, n: int, device: torch.device) -> torch.Tensor:
        """The starting variables of ``n`` masks: everything kept."""
        return torch.ones((n, 1, *self.coarse_shape), device=device)

    def full(self, variables: torch.Tensor) -> torch.Tensor:
        """The masks on the images' grid (the variables themselves when f = 1)."""
        if self.is_identity:
            return variables
        up = F.interpolate(
            variables, scale_factor=self.factor, mode="trilinear", align_corners=False
        )
        x, y, z = self.grid
        up = up[..., :x, :y, :z]
        if self.brain is not None:
            up = torch.where(self.brain, up, 1.0)
        return up

    def pull_back(self, variables: torch.Tensor, grad_full: torch.Tensor) -> torch.Tensor:
        """The gradient with respect to the variables of a loss whose gradient with
        respect to the full masks is ``grad_full``: the adjoints of :meth:`full`'s steps
        in reverse, as autograd would chain them (the same result bit for bit, tested),
        without running the upsampling forward again to record them."""
        if self.is_identity:
            return grad_full
        if self.brain is not None:  # kept at 1 outside the brain: no gradient there
            grad_full = torch.where(self.brain, grad_full, 0.0)
        upsampled = [n * self.factor for n in self.coarse_shape]
        pad: list[int] = []
        for n, size in zip(reversed(upsampled), reversed(self.grid), strict=True):
            pad += [0, n - size]  # the adjoint of the crop
        f = float(self.factor)
        return torch.ops.aten.upsample_trilinear3d_backward(
            F.pad(grad_full, pad), upsampled, list(variables.shape), False, f, f, f
        )
