"""A trained model's folder: its record and its weights.

``load_model`` is the one way a model is read back, whether neuromask trained it (a run
folder: ``config.json`` and ``model.safetensors``, read by ``load_trained_model``) or
ClinicaDL did (a MAPS, :mod:`neuromask.models.maps`). Neither unpickles code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from neuromask.errors import (
    GridMismatchError,
    MissingFileError,
    NeuromaskError,
    ParameterError,
    TableError,
)
from neuromask.io.clinicadl_layout import MapsLayout, maps_of_selection_dir
from neuromask.io.grid import Grid
from neuromask.io.layout import SplitLayout, recorded_path
from neuromask.models.cnn import CNN3D
from neuromask.models.maps import load_maps_model, resolve_maps_folder
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


def model_folder(
    path: str | os.PathLike[str],
    split: int | None = None,
    selection_metric: str | None = None,
) -> Path:
    """The folder that holds one model: ``path`` itself for a neuromask run folder or a
    MAPS's ``split-<k>/best-<metric>`` folder, and that folder for a MAPS root with
    ``split`` and ``selection_metric`` (``--split`` / ``--selection-metric``)."""
    path = Path(path)
    if MapsLayout(path).is_maps():
        return resolve_maps_folder(path, split, selection_metric)
    if split is not None or selection_metric is not None:
        what = "a MAPS model folder" if is_maps_model(path) else "a neuromask run folder"
        raise ParameterError(
            f"--split and --selection-metric choose a model in a ClinicaDL MAPS; {path} is {what}."
        )
    return path


def is_maps_model(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a ClinicaDL MAPS's ``split-<k>/best-<metric>`` folder."""
    return maps_of_selection_dir(folder) is not None


def load_model(
    path: str | os.PathLike[str],
    split: int | None = None,
    selection_metric: str | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained CNN (eval mode; logits with AD in column 1) and its record, from a
    neuromask run folder or a ClinicaDL MAPS (see :func:`model_folder`)."""
    folder = model_folder(path, split, selection_metric)
    if is_maps_model(folder):
        return load_maps_model(folder)
    return load_trained_model(folder)


def model_grid(record: dict[str, Any]) -> Grid | None:
    return Grid.from_dict(record["grid"]) if "grid" in record else None


def require_model_grid(record: dict[str, Any], grid: Grid, what: str) -> None:
    """An error unless images on ``grid`` fit the model: the same grid (shape and affine)
    when the record holds one (neuromask models), the same shape otherwise (a MAPS
    records only its input size)."""
    recorded = model_grid(record)
    if recorded is not None:
        recorded.require_match(grid, what=what, reference="the model's grid")
    elif tuple(grid.shape) != tuple(record["input_shape"]):
        size = " × ".join(str(int(s)) for s in grid.shape)
        expected = " × ".join(str(int(s)) for s in record["input_shape"])
        raise GridMismatchError(f"{what} are {size} voxels; the model takes {expected}.")


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


def training_tables(
    record: dict[str, Any], model_dir: object, caps: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """The CAPS folder and the training table of the split a model was trained on. For a
    MAPS whose recorded CAPS folder is not on this machine, ``caps`` (the one a command
    was given) stands in for it."""
    if record.get("source") != "clinicadl":
        caps_dir, split_dir, split = training_paths(record, model_dir)
        return caps_dir, SplitLayout(split_dir).find_tsv(split, "train")
    return maps_caps(record, caps), maps_table(record, "train")


def maps_caps(record: dict[str, Any], caps: str | os.PathLike[str] | None) -> Path:
    recorded = Path(record["caps"]) if record.get("caps") else None
    if recorded is not None and recorded.is_dir():
        return recorded
    if caps is not None:
        return Path(caps)
    raise MissingFileError(
        f"The MAPS {record['maps']} was trained on the CAPS folder {recorded}, which is not "
        "on this machine; give the CAPS folder that holds its sessions."
    )


def maps_table(record: dict[str, Any], group: str) -> Path:
    path = Path(record["tables"][group])
    if not path.is_file():
        raise MissingFileError(
            f"The MAPS {record['maps']} lacks {path}, the {group} sessions of its split "
            f"{record['split']}; ClinicaDL writes it when it trains that split."
        )
    return path


def recorded_validation_tsv(record: dict[str, Any], model_dir: str | os.PathLike[str]) -> Path:
    """The validation table of the split a model was trained on, checked to be the one it
    was trained with (when the record holds its hash)."""
    if record.get("source") == "clinicadl":
        return maps_table(record, "validation")
    folder = Path(model_dir)
    split = int(record["split"])
    tsv = SplitLayout(recorded_path(record["split_dir"], folder)).find_tsv(split, "validation")
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
