"""A ClinicaDL MAPS read as a neuromask model: the CNN of one split and selection metric,
built from ``maps.json`` and loaded from ``model.pth.tar`` without unpickling code.

``maps.json`` gives the architecture, the input size, the class codes and the
preprocessing; the checkpoint is read with ``torch.load(weights_only=True)``, so a file
holding anything but tensors and plain values is refused rather than executed. The
record returned has the keys every neuromask job reads (``input_shape``,
``train.normalization``, ``caps``, the split's tables) next to ClinicaDL's own settings.

Only what neuromask can explain faithfully is accepted: image-level classification of
AD against CN with ``Conv5_FC3`` or ``Conv4_FC3`` on t1-volume gray-matter maps
(ClinicaDL's ``custom`` preprocessing with the t1-volume suffix, or ``t1-volume``), with
or without ClinicaDL's min-max normalisation. Anything else is a one-line error.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from neuromask.errors import MissingFileError, NeuromaskError
from neuromask.io.clinicadl_layout import MapsLayout, maps_of_selection_dir
from neuromask.models.clinicadl import ARCHITECTURES, ClassOrder, ClinicaDLCNN

#: ClinicaDL's image-level networks that neuromask does not rebuild (named in errors).
OTHER_ARCHITECTURES = ("Stride_Conv5_FC3", "resnet18", "ResNet3D", "SqueezeExcitationCNN")
#: The preprocessing values whose images are t1-volume gray-matter maps.
GM_PREPROCESSING = ("custom", "t1-volume")


class UnsupportedModelError(NeuromaskError, ValueError):
    """A MAPS holds a model that neuromask cannot rebuild or explain."""


class ClinicaDLCheckpointError(NeuromaskError, ValueError):
    """A ClinicaDL checkpoint cannot be read as tensors, or does not fit its MAPS."""


def _shape(values: Any) -> str:
    return "×".join(str(int(v)) for v in values)


def read_maps_record(maps: MapsLayout) -> dict[str, Any]:
    """``maps.json``, with the keys that older ClinicaDL versions named otherwise renamed
    as ClinicaDL itself does (``model`` → ``architecture``, ``minmaxnormalization`` →
    ``normalize``)."""
    path = maps.record
    if not path.is_file():
        raise MissingFileError(f"{maps.root} is not a ClinicaDL MAPS: it has no maps.json.")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsupportedModelError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(record, dict):
        raise UnsupportedModelError(f"{path} does not hold a JSON object.")
    for old, new in (("model", "architecture"), ("minmaxnormalization", "normalize")):
        if old in record and new not in record:
            record[new] = record.pop(old)
    return record


def _setting(record: dict[str, Any], key: str, path: Path, default: Any = None) -> Any:
    if key in record:
        return record[key]
    if default is None:
        raise UnsupportedModelError(f"{path} lacks {key!r}, which neuromask needs.")
    return default


def _check_record(record: dict[str, Any], path: Path) -> tuple[str, tuple[int, int, int]]:
    """The architecture and input grid, once every setting is one neuromask supports."""
    architecture = str(_setting(record, "architecture", path))
    if architecture not in ARCHITECTURES:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"{path}: architecture {architecture!r} is not supported; neuromask rebuilds "
            f"ClinicaDL's {supported} (not {', '.join(OTHER_ARCHITECTURES)} or others)."
        )
    preprocessing = dict(record.get("preprocessing_dict") or {})
    mode = preprocessing.get("mode", record.get("mode", "image"))
    kind = preprocessing.get("preprocessing", record.get("preprocessing", "custom"))
    checks = (
        (record.get("network_task", "classification") == "classification", "network_task",
         "classification"),
        (mode == "image", "mode", "image (neuromask explains whole-image CNNs)"),
        (not record.get("multi_network", record.get("multi", False)), "multi_network", "false"),
        (not record.get("size_reduction", False), "size_reduction", "false"),
        (kind in GM_PREPROCESSING, "preprocessing",
         "t1-volume gray-matter maps (custom or t1-volume)"),
    )  # fmt: skip
    for ok, key, expected in checks:
        if not ok:
            got = {"mode": mode, "preprocessing": kind}.get(key, record.get(key))
            raise UnsupportedModelError(f"{path}: {key} is {got!r}; neuromask needs {expected}.")
    size = _setting(record, "input_size", path)
    if (
        not isinstance(size, list)
        or len(size) != 4
        or size[0] != 1
        or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise UnsupportedModelError(
            f"{path}: input_size must be [1, X, Y, Z] (one channel, a 3D image), got {size!r}."
        )
    return architecture, (size[1], size[2], size[3])


def class_order(record: dict[str, Any], path: Path) -> tuple[int, int]:
    """The columns of ClinicaDL's logits that hold CN and AD, from ``label_code``."""
    code = record.get("label_code") or {"AD": 0, "CN": 1}  # ClinicaDL's alphabetical codes
    if not isinstance(code, dict) or set(code) != {"AD", "CN"} or set(code.values()) != {0, 1}:
        raise UnsupportedModelError(
            f"{path}: label_code must code AD and CN as 0 and 1, got {code!r}; neuromask "
            "explains AD against CN classifiers."
        )
    if int(record.get("output_size", 2)) != 2:
        raise UnsupportedModelError(f"{path}: output_size must be 2 (AD and CN).")
    return int(code["CN"]), int(code["AD"])


def read_clinicadl_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ClinicaDL checkpoint (``{"model": ..., "epoch", "name"}``),
    read without running pickled code; a DistributedDataParallel ``module.`` prefix is
    dropped."""
    if not path.is_file():
        raise MissingFileError(f"ClinicaDL checkpoint {path} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's message suggests unsafe loading: never pass it on
        raise ClinicaDLCheckpointError(
            f"{path} holds pickled objects other than tensors and plain values; neuromask "
            "reads checkpoints with torch.load(weights_only=True) and never runs pickled "
            "code. Save the weights again as {'model': model.state_dict()}."
        ) from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ClinicaDLCheckpointError(
            f"{path} is not a ClinicaDL model checkpoint: it needs a 'model' entry holding "
            "the network's state dict."
        )
    return {k.removeprefix("module."): v for k, v in weights.items()}


def _load_weights(network: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ClinicaDLCheckpointError(
            f"{path} does not hold the parameters of this architecture: "
            + "; ".join(
                f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            )
        )
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise ClinicaDLCheckpointError(
                f"{path}: {key} has shape {_shape(weights[key].shape)}, but the architecture "
                f"on maps.json's input_size needs {_shape(tensor.shape)}."
            )
    network.load_state_dict(weights)


def resolve_maps_folder(
    path: str | os.PathLike[str], split: int | None, selection_metric: str | None
) -> Path:
    """``MAPS/split-<k>/best-<metric>`` for a MAPS root and a split (the only split when
    there is one) and metric (``loss`` by default)."""
    maps = MapsLayout(path)
    splits = maps.splits()
    if split is None:
        if len(splits) != 1:
            raise UnsupportedModelError(
                f"{path} is a ClinicaDL MAPS with splits {splits or 'none'}; choose one with --split."
            )
        split = splits[0]
    if split not in splits:
        raise MissingFileError(f"MAPS {path} has no split {split} (splits found: {splits}).")
    metric = selection_metric or "loss"
    metrics = maps.selection_metrics(split)
    if metric not in metrics:
        raise MissingFileError(
            f"MAPS {path} has no model selected on {metric!r} in split {split} "
            f"(best-<metric> folders found: {', '.join(metrics) or 'none'}); "
            "choose with --selection-metric."
        )
    return maps.selection_dir(split, metric)


def load_maps_model(folder: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The CNN of ``MAPS/split-<k>/best-<metric>`` (eval mode, AD logit in column 1) and its
    record."""
    found = maps_of_selection_dir(folder)
    if found is None:
        raise MissingFileError(
            f"{folder} is not a MAPS model folder (MAPS/split-<k>/best-<metric>)."
        )
    maps, split, metric = found
    record = read_maps_record(maps)
    architecture, grid = _check_record(record, maps.record)
    order = class_order(record, maps.record)
    network = ClinicaDLCNN(architecture, grid, 2, float(record.get("dropout", 0.0) or 0.0))
    weights_path = maps.model_file(split, metric)
    _load_weights(network, read_clinicadl_weights(weights_path), weights_path)
    model = ClassOrder(network, order).eval()
    tables = {group: maps.group_tsv(group, split) for group in ("train", "validation")}
    neuromask_record = {
        "source": "clinicadl",
        "maps": str(maps.root.resolve()),
        "architecture": architecture,
        "split": split,
        "selection_metric": metric,
        "input_shape": list(grid),
        "train": {"normalization": "minmax" if record.get("normalize", True) else "none"},
        "caps": str(record.get("caps_directory", "")),
        "tables": {k: str(v.resolve()) for k, v in tables.items()},
        "label_code": record.get("label_code") or {"AD": 0, "CN": 1},
        "clinicadl": record,
    }
    return model, neuromask_record
