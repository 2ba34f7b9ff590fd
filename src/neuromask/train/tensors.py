"""From a GM dataset to tensors: labels, per-image intensity normalisation, batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from neuromask.errors import TableError

LABELS = {"CN": 0, "AD": 1}


def labels_of(sessions: pd.DataFrame, source: str = "sessions") -> np.ndarray:
    """0 for CN, 1 for AD."""
    if "diagnosis" not in sessions.columns:
        raise TableError(f"{source} has no diagnosis column")
    unknown = sorted(set(sessions["diagnosis"]) - set(LABELS))
    if unknown:
        raise TableError(f"{source}: diagnoses {unknown} are not AD or CN")
    return sessions["diagnosis"].map(LABELS).to_numpy(dtype=np.int64, copy=True)


def normalize_images(images: np.ndarray, method: str) -> np.ndarray:
    """Per-image intensity normalisation, done once for the whole stack.

    ``none`` keeps GM probabilities as they are; ``zscore`` centres and scales each image
    over its voxels; ``minmax`` maps each image to [0, 1]. The dtype is kept.
    """
    if method == "none":
        return images
    out = np.empty(images.shape, dtype=images.dtype)
    for i in range(images.shape[0]):
        image = np.asarray(images[i], dtype=np.float32)
        if method == "zscore":
            std = float(image.std())
            out[i] = (image - float(image.mean())) / (std if std > 0 else 1.0)
        elif method == "minmax":
            lo, hi = float(image.min()), float(image.max())
            out[i] = (image - lo) / ((hi - lo) if hi > lo else 1.0)
        else:
            raise ValueError(f"unknown normalization {method!r}")
    return out


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 1, X, Y, Z) tensor sharing memory with ``images`` when it is a plain array."""
    array = np.ascontiguousarray(images)
    if not array.flags.writeable:  # a read-only memory map of the cache: read it into memory once
        array = array.copy()
    return torch.from_numpy(array).unsqueeze(1)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from neuromask.errors import ParameterError

        raise ParameterError("device 'cuda' was asked for, but PyTorch sees no CUDA device")
    return torch.device(device)
