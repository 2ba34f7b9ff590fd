"""JSON sidecars of the maps neuromask writes, in the BIDS-derivatives manner of CAPS:
``sub-01_ses-M000_mask.nii.gz`` comes with ``sub-01_ses-M000_mask.json``, ``mask.nii.gz``
with ``mask.json``, each holding what made the map (the model, the data, every mask
setting and seed, the neuromask version), so that a map copied elsewhere still says
where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import neuromask
from neuromask.io.atomic import atomic_path


def sidecar_path(nifti: Path) -> Path:
    """``x.nii.gz`` or ``x.nii`` -> ``x.json``."""
    name = nifti.name.removesuffix(".gz").removesuffix(".nii")
    return nifti.with_name(name + ".json")


def write_sidecar(nifti: Path, description: str, sources: list[str], **fields: Any) -> Path:
    """Write ``nifti``'s sidecar: BIDS's ``Description``, ``Sources`` and ``GeneratedBy``,
    then ``fields``."""
    record = {
        "Description": description,
        "Sources": sources,
        "GeneratedBy": [{"Name": "neuromask", "Version": neuromask.__version__}],
        **fields,
    }
    path = sidecar_path(nifti)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))
    return path


def model_description(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Which trained model a map explains: a neuromask run folder, or a ClinicaDL MAPS's
    split and selection metric."""
    if record.get("source") == "clinicadl":
        keys = ("maps", "architecture", "split", "selection_metric")
        return {"Source": "ClinicaDL MAPS", **{k: record[k] for k in keys}}
    return {"Source": "neuromask", "folder": str(folder.resolve()), "split": record.get("split")}
