"""Saving and loading weights and checkpoints without unpickling code.

Final weights are safetensors files. Checkpoints (weights, optimiser state, history)
are torch files restricted to tensors and plain containers, read with
``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from neuromask.errors import ImageError, MissingFileError
from neuromask.io.atomic import atomic_path


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Weights file {path} does not exist.")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ImageError(f"Weights file {path} cannot be read: {exc}") from None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
