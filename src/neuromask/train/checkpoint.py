"""Saving and loading weights and checkpoints without unpickling code.

Final weights are safetensors files. Checkpoints (weights, optimiser state, history)
are torch files restricted to tensors and plain containers, read with
``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from neuromask.errors import ImageError, missing_file
from neuromask.io.atomic import atomic_path
from neuromask.io.checkpoint import (  # noqa: F401  (the training checkpoint)
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "Weights file")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ImageError(f"Weights file {path} cannot be read: {exc}") from None


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
