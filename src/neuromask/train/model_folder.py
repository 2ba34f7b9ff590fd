"""A trained model's run folder: its record (``config.json``) and its weights.

``load_trained_model`` is the one way a neuromask model is read back: the architecture is
rebuilt from the record and the weights are read from safetensors (no unpickling).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from neuromask.errors import MissingFileError, NeuromaskError, ParameterError, TableError
from neuromask.io.grid import Grid
from neuromask.io.layout import SplitLayout, recorded_path
from neuromask.models.cnn import CNN3D
from neuromask.train.checkpoint import load_weights
from neuromask.train.config import train_config_from_record

#: The version of the run-folder format this neuromask writes and reads.
MODEL_FORMAT = 1


class IncompatibleModelError(NeuromaskError, ValueError):
    """A model folder was written by a version of neuromask that this one cannot read."""


def read_model_record(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / "config.json"
    if not path.is_file():
        raise MissingFileError(
            f"Model folder {model_dir} has no config.json; is it a run folder (split-<k>/run-<r>)?"
        )
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncompatibleModelError(f"{path} is not valid JSON ({exc}).") from None
    missing = (
        [k for k in ("format", "train", "input_shape") if k not in record]
        if isinstance(record, dict)
        else []
    )
    if not isinstance(record, dict) or missing:
        raise IncompatibleModelError(
            f"{path} does not hold a neuromask model record"
            + (f" (it lacks {', '.join(missing)})." if missing else " (a JSON object).")
        )
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
    config = train_config_from_record(record["train"], source=str(model_dir / "config.json"))
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


def training_paths(record: dict[str, Any], model_dir: object) -> tuple[Path, Path, int]:
    """Where a model's training data are: the CAPS folder, the split folder and the split
    it was trained on (from its record)."""
    if "split_dir" not in record or "caps" not in record:
        raise ParameterError(
            f"{model_dir}/config.json does not name the split and CAPS folder it was trained on"
        )
    folder = Path(str(model_dir))
    caps = recorded_path(record["caps"], folder)
    split_dir = recorded_path(record["split_dir"], folder)
    for path, what in ((caps, "CAPS folder"), (split_dir, "split folder")):
        if not path.is_dir():
            raise MissingFileError(
                f"{folder}/config.json names the {what} {path} that the model was trained on, "
                "and it no longer exists."
            )
    return caps, split_dir, int(record.get("split", 0))


def recorded_validation_tsv(record: dict[str, Any], model_dir: str | os.PathLike[str]) -> Path:
    """The validation table of the split a model was trained on, checked to be the one it
    was trained with (when the record holds its hash)."""
    folder = Path(model_dir)
    split = int(record["split"])
    tsv = SplitLayout(recorded_path(record["split_dir"], folder)).validation_tsv(split)
    if not tsv.is_file():
        raise MissingFileError(
            f"{folder}/config.json names the validation set {tsv}, which no longer exists; "
            "`neuromask mask group` takes --validation to name another table."
        )
    expected = record.get("split_sha256", {}).get("validation")
    if expected and hashlib.sha256(tsv.read_bytes()).hexdigest() != expected:
        raise TableError(
            f"{tsv} changed since the model of {folder} was trained on its split; "
            "`neuromask mask group` takes --validation to use it (or another table) anyway."
        )
    return tsv


#: The former name of :func:`training_paths`.
training_data = training_paths
