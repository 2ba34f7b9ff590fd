"""The architecture diagram (the paper's Figure 1) shows the CNN that is built."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuromask.figures.architecture import architecture_stages, plot_architecture
from neuromask.models import CNNConfig
from neuromask.models.cnn import CNN3D

SHAPE = (13, 15, 11)


def _block_outputs(config: CNNConfig) -> list[tuple[int, ...]]:
    """(channels, grid) after each block of the real network, by forward hooks."""
    model = CNN3D(config, SHAPE).eval()
    ends = [m for m in model.features if isinstance(m, nn.MaxPool3d)]
    if config.downsampling == "stride":  # a block ends with its strided conv's activation
        layers = list(model.features)
        ends = [
            layers[i + 2]
            for i, m in enumerate(layers)
            if isinstance(m, nn.Conv3d) and m.stride == (2, 2, 2)
        ]
    shapes: list[tuple[int, ...]] = []
    for end in ends:
        end.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 1, *SHAPE))
    return shapes


@pytest.mark.parametrize("downsampling", ["maxpool", "stride"])
def test_the_diagram_follows_the_network(downsampling):
    config = CNNConfig(
        n_blocks=3,
        first_filters=4,
        max_filters=8,
        sub_blocks=(1, 2, 3),
        downsampling=downsampling,
        fc_layers=(20, 7),
        n_classes=2,
    )
    stages = architecture_stages(config, SHAPE)
    assert [s.kind for s in stages] == ["input", "conv", "conv", "conv", "fc", "fc", "output"]
    assert stages[0].grid == SHAPE and stages[0].channels == 1
    convs = [(s.channels, *s.grid) for s in stages if s.kind == "conv"]
    assert convs == _block_outputs(config)
    assert [s.channels for s in stages if s.kind in ("fc", "output")] == [20, 7, 2]
    assert "2 × conv" in stages[2].detail and "3 × conv" in stages[3].detail
    flat = 8 * 2 * 2 * 2
    assert f"flatten {flat}" in stages[4].detail


def test_the_diagram_is_drawn(tmp_path):
    config = CNNConfig(n_blocks=2, first_filters=4, max_filters=8, sub_blocks=(1, 1))
    out = plot_architecture(config, SHAPE, tmp_path / "arch.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
