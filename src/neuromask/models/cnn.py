"""A configurable 3D CNN family covering the paper's search space.

A network is ``n_blocks`` convolutional blocks followed by fully connected layers:

- block b has ``min(first_filters * 2**b, max_filters)`` filters and ``sub_blocks[b]``
  sub-blocks, each Conv3d (kernel 3, padding 1) -> BatchNorm3d -> activation;
- each block halves the grid, by max pooling (kernel 2, stride 2, ceil mode, so odd sizes
  keep their last voxel) or by giving its last convolution a stride of 2;
- the classifier is Flatten -> Dropout -> [Linear -> activation] per hidden size in
  ``fc_layers`` -> Linear to the classes. Its input size comes from the grid.

Weights keep PyTorch's default initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from neuromask.errors import ParameterError

ACTIVATIONS = {"leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}
DOWNSAMPLING = ("maxpool", "stride")


@dataclass(frozen=True)
class CNNConfig:
    """Architecture settings. ``sub_blocks`` has one entry per block."""

    n_blocks: int = 5
    first_filters: int = 8
    max_filters: int = 128
    sub_blocks: tuple[int, ...] = (1, 1, 1, 1, 1)
    downsampling: str = "maxpool"
    fc_layers: tuple[int, ...] = ()
    dropout: float = 0.5
    activation: str = "leaky_relu"
    n_classes: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "sub_blocks", tuple(int(s) for s in self.sub_blocks))
        object.__setattr__(self, "fc_layers", tuple(int(s) for s in self.fc_layers))

        def bad(name: str, expected: str) -> ParameterError:
            return ParameterError(f"model.{name} must be {expected}, got {getattr(self, name)!r}")

        if self.n_blocks < 1:
            raise bad("n_blocks", "at least 1")
        if self.first_filters < 1 or self.max_filters < self.first_filters:
            raise bad("max_filters", f"at least first_filters ({self.first_filters})")
        if len(self.sub_blocks) != self.n_blocks:
            raise bad("sub_blocks", f"a list of {self.n_blocks} entries (one per block)")
        if any(not 1 <= s <= 3 for s in self.sub_blocks):
            raise bad("sub_blocks", "entries between 1 and 3")
        if self.downsampling not in DOWNSAMPLING:
            raise bad("downsampling", f"one of {', '.join(DOWNSAMPLING)}")
        if any(s < 1 for s in self.fc_layers):
            raise bad("fc_layers", "positive hidden sizes")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", "in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise bad("activation", f"one of {', '.join(ACTIVATIONS)}")
        if self.n_classes < 2:
            raise bad("n_classes", "at least 2")

    def filters(self, block: int) -> int:
        return min(self.first_filters * 2**block, self.max_filters)

    def feature_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """Channels and grid after the convolutional blocks, for an input grid."""
        shape = tuple(int(s) for s in input_shape)
        for _ in range(self.n_blocks):
            shape = tuple(math.ceil(s / 2) for s in shape)
        return (self.filters(self.n_blocks - 1), *shape)  # type: ignore[return-value]


class CNN3D(nn.Module):
    """The CNN of :class:`CNNConfig` for single-channel volumes of ``input_shape``.

    ``forward`` takes (batch, 1, X, Y, Z) and returns class logits (batch, n_classes);
    class 1 is AD.
    """

    def __init__(self, config: CNNConfig, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ParameterError(f"CNN3D: input_shape must be three sizes, got {input_shape}")
        self.config = config
        self.input_shape = tuple(int(s) for s in input_shape)
        act = ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        channels = 1
        for block in range(config.n_blocks):
            out = config.filters(block)
            n_sub = config.sub_blocks[block]
            for sub in range(n_sub):
                last = sub == n_sub - 1
                stride = 2 if (config.downsampling == "stride" and last) else 1
                layers += [
                    nn.Conv3d(channels, out, kernel_size=3, stride=stride, padding=1),
                    nn.BatchNorm3d(out),
                    act(),
                ]
                channels = out
            if config.downsampling == "maxpool":
                layers.append(nn.MaxPool3d(kernel_size=2, stride=2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        flat = math.prod(config.feature_shape(self.input_shape))  # type: ignore[arg-type]
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(config.dropout)]
        width = flat
        for hidden in config.fc_layers:
            head += [nn.Linear(width, hidden), act()]
            width = hidden
        head.append(nn.Linear(width, config.n_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
