"""ClinicaDL's image-level 3D CNNs, rebuilt layer for layer so that a ClinicaDL
checkpoint loads into them under its own parameter names.

ClinicaDL (1.x) names a CNN's parts ``convolutions`` (a Sequential of Conv3d,
BatchNorm3d, ReLU and ``PadMaxPool3d``) and ``fc`` (Flatten, Dropout, then Linear and
ReLU layers); the same indices here give the same state-dict keys
(``convolutions.0.weight``, ``fc.2.weight``...). Supported: ``Conv5_FC3`` and
``Conv4_FC3``. (ClinicaDL's ``Conv4_FC3`` has five convolutional blocks, like
``Conv5_FC3``; the two differ in their fully connected layers, 1300-50 against 50-40.)

:class:`PadMaxPool3d` follows ClinicaDL's semantics, which differ from
``nn.MaxPool3d(ceil_mode=True)``: an odd size is padded with one zero **before** the
first voxel (not after the last), then pooled by 2 with stride 2.

:class:`ClassOrder` puts the AD logit in column 1, as every neuromask job expects:
ClinicaDL numbers the classes in the order of its ``label_code`` (AD = 0, CN = 1 by
default, the alphabetical order).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

#: The fully connected hidden sizes of each supported architecture.
ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "Conv5_FC3": (1300, 50),
    "Conv4_FC3": (50, 40),
}
#: Filters of the five convolutional blocks they share.
FILTERS = (8, 16, 32, 64, 128)


class PadMaxPool3d(nn.Module):
    """Max pooling by ``kernel_size`` with ``stride`` after zero-padding each spatial size
    up to a multiple of ``stride``, at the start of the axis (ClinicaDL's layer)."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def padding(self, shape: torch.Size) -> tuple[int, ...]:
        """``F.pad``'s argument (last axis first) for a (batch, channel, X, Y, Z) shape."""
        before = [(-int(size)) % self.stride for size in shape[2:]]
        return (before[2], 0, before[1], 0, before[0], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = functional.pad(x, self.padding(x.shape), mode="constant", value=0.0)
        return functional.max_pool3d(padded, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def pooled_size(size: int, stride: int = 2) -> int:
    """A spatial size after one :class:`PadMaxPool3d` (2, 2)."""
    return math.ceil(size / stride)


class ClinicaDLCNN(nn.Module):
    """ClinicaDL's ``Conv5_FC3`` or ``Conv4_FC3`` for single-channel volumes of
    ``input_shape``; ``forward`` returns ClinicaDL's logits, in its class order."""

    def __init__(
        self,
        architecture: str,
        input_shape: tuple[int, int, int],
        output_size: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unsupported ClinicaDL architecture {architecture!r}")
        self.architecture = architecture
        self.input_shape = tuple(int(s) for s in input_shape)
        layers: list[nn.Module] = []
        channels = 1
        for filters in FILTERS:
            layers += [
                nn.Conv3d(channels, filters, 3, padding=1),
                nn.BatchNorm3d(filters),
                nn.ReLU(),
                PadMaxPool3d(2, 2),
            ]
            channels = filters
        self.convolutions = nn.Sequential(*layers)
        grid = self.input_shape
        for _ in FILTERS:
            grid = tuple(pooled_size(s) for s in grid)
        width = channels * math.prod(grid)
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(p=dropout)]
        for hidden in ARCHITECTURES[architecture]:
            head += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        head.append(nn.Linear(width, output_size))
        self.fc = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convolutions(x))


class ClassOrder(nn.Module):
    """``network``'s logits with their columns reordered: column j of the output is column
    ``order[j]`` of the network's. ``network`` stays reachable as ``.network``."""

    def __init__(self, network: nn.Module, order: tuple[int, ...]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).index_select(1, self.order)
