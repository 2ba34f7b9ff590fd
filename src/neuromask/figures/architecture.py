"""The CNN's architecture as a diagram (the paper's Figure 1), drawn from its settings.

Every stage of :class:`~neuromask.models.cnn.CNNConfig` becomes one box, left to right:
the input, each convolutional block (its filters, its sub-blocks of Conv3d 3x3x3 ->
BatchNorm -> activation, its downsampling and the grid it leaves), the classifier's
hidden layers and the output. A box's height grows with its grid (log scale) and its
width with its channels, so that the funnel of the network shows at a glance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from neuromask.figures.plotting import plt, save_figure
from neuromask.models.cnn import CNNConfig


@dataclass(frozen=True)
class Stage:
    """One box of the diagram."""

    title: str
    detail: str
    channels: int
    grid: tuple[int, ...]
    kind: str  # "input", "conv", "fc" or "output"


def architecture_stages(config: CNNConfig, input_shape: tuple[int, int, int]) -> list[Stage]:
    """The diagram's boxes for ``config`` on ``input_shape``: what the figure shows, as
    data (the shapes follow :meth:`CNNConfig.feature_shape`)."""
    shape = tuple(int(s) for s in input_shape)
    stages = [Stage("input", "GM map", 1, shape, "input")]
    down = "max pool /2" if config.downsampling == "maxpool" else "last conv stride 2"
    for block in range(config.n_blocks):
        shape = tuple(math.ceil(s / 2) for s in shape)
        n_sub = config.sub_blocks[block]
        stages.append(
            Stage(
                f"block {block + 1}",
                f"{n_sub} × conv 3³\nBN, {config.activation}\n{down}",
                config.filters(block),
                shape,
                "conv",
            )
        )
    flat = math.prod(config.feature_shape(input_shape))
    detail = f"flatten {flat:,}\ndropout {config.dropout:g}\n"
    for i, hidden in enumerate(config.fc_layers):
        stages.append(
            Stage(f"FC {i + 1}", f"{detail}linear\n{config.activation}", hidden, (), "fc")
        )
        detail = ""
    stages.append(
        Stage("output", f"{detail}linear\nlogits (CN, AD)", config.n_classes, (), "output")
    )
    return stages


_COLOURS = {"input": "#d9d9d9", "conv": "#9ecae1", "fc": "#fdd0a2", "output": "#a1d99b"}


def plot_architecture(
    config: CNNConfig,
    input_shape: tuple[int, int, int],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw the diagram of ``config`` on ``input_shape`` as a PNG at ``path``."""
    stages = architecture_stages(config, input_shape)
    fig, ax = plt.subplots(figsize=(1.45 * len(stages) + 1, 4.2))
    x = 0.0
    for stage in stages:
        voxels = math.prod(stage.grid) if stage.grid else 1
        height = 0.6 + 2.2 * math.log10(voxels + 1) / math.log10(math.prod(input_shape) + 1)
        width = 0.35 + 0.25 * math.log2(stage.channels + 1)
        if not stage.grid:
            height = 0.6 + 0.5 * math.log10(stage.channels + 1)
        ax.add_patch(
            plt.Rectangle(
                (x, -height / 2), width, height, facecolor=_COLOURS[stage.kind], edgecolor="black"
            )
        )
        size = "×".join(str(s) for s in stage.grid)
        label = f"{stage.channels} × {size}" if stage.grid else f"{stage.channels} units"
        ax.text(x + width / 2, height / 2 + 0.12, stage.title, ha="center", va="bottom", fontsize=9)
        ax.text(x + width / 2, -height / 2 - 0.1, label, ha="center", va="top", fontsize=7.5)
        ax.text(x + width / 2, -1.85, stage.detail, ha="center", va="top", fontsize=6.5)
        x += max(width, 1.0) + 0.45
    ax.set_xlim(-0.3, x - 0.25)
    ax.set_ylim(-2.9, 2.0)
    ax.axis("off")
    params = f"{config.n_blocks} blocks, filters {config.first_filters}–{config.max_filters}"
    ax.set_title(title or f"CNN architecture ({params})", fontsize=10)
    return save_figure(fig, path)


def plot_run_architecture(run_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """Draw the CNN of a trained run folder (from its ``config.json``) at ``path``; returns
    a caption naming its preset and input grid."""
    from neuromask.train.config import train_config_from_record
    from neuromask.train.model_folder import read_model_record

    record = read_model_record(run_dir)
    config = train_config_from_record(record["train"], source=f"{run_dir}/config.json")
    shape = tuple(int(n) for n in record["input_shape"])
    plot_architecture(config.model, shape, path)  # type: ignore[arg-type]
    preset = record["train"].get("model_preset") or "custom settings"
    return f"The CNN's architecture ({preset}, input {'×'.join(map(str, shape))})"
