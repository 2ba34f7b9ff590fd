"""Scoring a trained model on any set of sessions: ``neuromask evaluate``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuromask.data.dataset import load_gm_maps
from neuromask.errors import MissingFileError, NeuromaskError
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.grid import Grid
from neuromask.io.participants import read_participants, write_tsv
from neuromask.models.cnn import CNN3D
from neuromask.train.checkpoint import load_weights
from neuromask.train.config import train_config_from_mapping
from neuromask.train.metrics import binary_metrics
from neuromask.train.tensors import image_tensor, labels_of, normalize_images, resolve_device
from neuromask.train.trainer import MODEL_FORMAT, predict, prediction_table


class IncompatibleModelError(NeuromaskError, ValueError):
    """A model folder was written by a version of neuromask that this one cannot read."""


def read_model_record(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / "config.json"
    if not path.is_file():
        raise MissingFileError(
            f"Model folder {model_dir} has no config.json; is it a run folder (split-<k>/run-<r>)?"
        )
    record = json.loads(path.read_text())
    if record.get("format") != MODEL_FORMAT:
        raise IncompatibleModelError(
            f"Model folder {model_dir} was written by neuromask {record.get('neuromask_version', '?')} "
            f"in format {record.get('format')!r}; this neuromask reads format {MODEL_FORMAT}."
        )
    return record


def load_trained_model(
    model_dir: str | os.PathLike[str], weights: str = "model.safetensors"
) -> tuple[CNN3D, dict[str, Any]]:
    """The trained CNN of a run folder, in eval mode, and its record (config.json)."""
    model_dir = Path(model_dir)
    record = read_model_record(model_dir)
    config = train_config_from_mapping(
        _as_toml(record["train"]), source=str(model_dir / "config.json")
    )
    model = CNN3D(config.model, tuple(record["input_shape"]))
    try:
        model.load_state_dict(load_weights(model_dir / weights))
    except RuntimeError as exc:
        raise IncompatibleModelError(
            f"Weights in {model_dir / weights} do not fit the architecture: {exc}"
        ) from None
    model.eval()
    return model, record


def model_grid(record: dict[str, Any]) -> Grid | None:
    return Grid.from_dict(record["grid"]) if "grid" in record else None


def evaluate_model(
    model_dir: str | os.PathLike[str],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    name: str,
    *,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, float]:
    """Write ``MODEL_DIR/NAME/predictions.tsv`` and ``metrics.json``; return the metrics."""
    model_dir = Path(model_dir)
    model, record = load_trained_model(model_dir)
    sessions = read_participants(tsv)
    data = load_gm_maps(
        caps,
        sessions,
        dartel_group=record.get("dartel_group"),
        cache_dir=cache_dir,
        progress=progress,
    )
    grid = model_grid(record)
    if grid is not None:
        grid.require_match(
            data.grid, what=f"The data of {tsv}", reference=f"the model's ({model_dir})"
        )
    normalization = record["train"]["normalization"]
    x = image_tensor(normalize_images(np.asarray(data.images), normalization))
    true = labels_of(sessions, str(tsv))
    dev = resolve_device(device)
    probs = predict(model.to(dev), x, np.arange(len(sessions)), 8, dev)
    predictions = prediction_table(sessions, true, probs)
    metrics = binary_metrics(
        true, predictions["predicted_label"].to_numpy(), predictions["p_ad"].to_numpy()
    )
    metrics["n_sessions"] = float(len(sessions))
    with staged_output_dir(model_dir / name, overwrite=overwrite) as stage:
        write_tsv(predictions, stage / "predictions.tsv")
        with atomic_path(stage / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"caps": str(caps), "tsv": str(tsv), **metrics}, indent=2))
    return metrics


def _as_toml(train: dict[str, Any]) -> dict[str, Any]:
    train = dict(train)
    model = dict(train.pop("model"))
    preset = train.pop("model_preset")
    return {**train, "model": {"preset": preset, **model}}
