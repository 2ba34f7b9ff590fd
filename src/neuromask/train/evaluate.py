"""Scoring a trained model on any set of sessions: ``neuromask evaluate``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from neuromask.data.dataset import load_gm_maps
from neuromask.errors import ParameterError
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.layout import EVALUATION_RECORD, record_path
from neuromask.io.participants import read_participants, write_tsv
from neuromask.train.classification import binary_metrics
from neuromask.train.model_folder import (  # noqa: F401  (the documented import path)
    IncompatibleModelError,
    load_model,
    load_trained_model,
    model_grid,
    read_model_record,
    require_model_grid,
)
from neuromask.train.tensors import image_tensor, labels_of, normalize_images, resolve_device
from neuromask.train.trainer import predict, prediction_table


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
    """Write ``MODEL_DIR/NAME/predictions.tsv`` and ``metrics.json``; return the metrics.

    ``model_dir``: a neuromask run folder, or a ClinicaDL MAPS's
    ``split-<k>/best-<metric>`` folder (where ClinicaDL writes its own predictions too).

    ``name`` is one plain label (letters, digits, ``-`` and ``_``), so that its folder is
    always a new child of ``MODEL_DIR``.
    """
    check_evaluation_name(name)
    model_dir = Path(model_dir)
    model, record = load_model(model_dir)
    sessions = read_participants(tsv, required=("diagnosis",))
    data = load_gm_maps(
        caps,
        sessions,
        dartel_group=record.get("dartel_group"),
        cache_dir=cache_dir,
        progress=progress,
    )
    require_model_grid(record, data.grid, what=f"The images of {tsv}")
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
    with staged_output_dir(
        model_dir / name, overwrite, marker=EVALUATION_RECORD, inputs=[caps, tsv]
    ) as stage:
        write_tsv(predictions, stage / "predictions.tsv")
        with atomic_path(stage / EVALUATION_RECORD) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "caps": record_path(caps, model_dir / name),
                        "tsv": record_path(tsv, model_dir / name),
                        **metrics,
                    },
                    indent=2,
                )
            )
    return metrics


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_evaluation_name(name: str) -> None:
    """An evaluation's name is one plain path component: a label such as ``test`` or
    ``aibl-baseline`` (letters, digits, ``-`` and ``_``, starting with a letter or digit).

    >>> check_evaluation_name("aibl_2")
    >>> check_evaluation_name("../x")
    Traceback (most recent call last):
    ...
    neuromask.errors.ParameterError: --name must be a plain label (letters, digits, - and _), got '../x'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParameterError(
            f"--name must be a plain label (letters, digits, - and _), got {name!r}"
        )
