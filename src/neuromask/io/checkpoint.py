"""Checkpoints of long jobs: torch files restricted to tensors and plain containers,
written atomically and read with ``weights_only=True``, so that no pickled code ever
runs. A file that cannot be read that way is reported, never loaded another way."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from neuromask.errors import NeuromaskError
from neuromask.io.atomic import atomic_path


class CheckpointError(NeuromaskError, ValueError):
    """A checkpoint file is empty, damaged, or not one this job wrote."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def unreadable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} {why}; it was not written by this job. Remove it to start the job over."
    )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint at ``path`` (a mapping of tensors and plain values)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise unreadable(path, "is empty")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's messages suggest unsafe loading: never pass them on
        raise unreadable(path, "cannot be read as tensors and plain values") from None
    if not isinstance(state, dict):
        raise unreadable(path, "does not hold a mapping")
    return state
