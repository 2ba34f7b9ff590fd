"""Presets looked up by name, and model construction from a name or a config."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neuromask.errors import ParameterError
from neuromask.models.cnn import CNN3D, CNNConfig

PRESETS: dict[str, CNNConfig] = {
    # The paper's family at its deepest: 7 blocks, 8 filters doubling up to 128
    # (8-16-32-64-128-128-128), one sub-block in the two widest-grid blocks, two in the
    # middle, three in the deep, cheap ones; dropout 0.5 and a single FC layer.
    "paper": CNNConfig(
        n_blocks=7,
        first_filters=8,
        max_filters=128,
        sub_blocks=(1, 1, 2, 2, 3, 3, 3),
        downsampling="maxpool",
        fc_layers=(),
        dropout=0.5,
        activation="leaky_relu",
    ),
    # ClinicaDL's Conv5_FC3: 5 blocks of 8-16-32-64-128 filters (Conv-BN-ReLU-MaxPool)
    # and FC 1300-50-2 with dropout 0.5.
    "conv5_fc3": CNNConfig(
        n_blocks=5,
        first_filters=8,
        max_filters=128,
        sub_blocks=(1, 1, 1, 1, 1),
        downsampling="maxpool",
        fc_layers=(1300, 50),
        dropout=0.5,
        activation="relu",
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, **overrides: Any) -> CNNConfig:
    """The preset ``name``, with fields replaced by ``overrides``.

    >>> get_preset("conv5_fc3").fc_layers
    (1300, 50)
    """
    if name not in PRESETS:
        raise ParameterError(f"Unknown model {name!r}; valid names: {', '.join(list_presets())}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def build_model(model: str | CNNConfig, input_shape: tuple[int, int, int]) -> CNN3D:
    """A CNN for ``input_shape`` from a preset name or a :class:`CNNConfig`."""
    config = get_preset(model) if isinstance(model, str) else model
    return CNN3D(config, input_shape)
