"""The one way an output folder is claimed by a job.

A job marks its output folder with a file (``mask_job.json``, ``sanity_job.json``,
``study.toml``, a run's ``config.json``) that describes what it computes. Rerunning the
same job finds its own marker and resumes; a different job is refused, or, with
``overwrite``, the folder's contents are removed first. Every command that writes a
folder it may later resume goes through :func:`claim_output_dir`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuromask.errors import NeuromaskError, OutputExistsError
from neuromask.io.atomic import atomic_path, is_empty_dir


def same_json(job: Any) -> Callable[[Path], bool]:
    """A marker test: the marker holds ``job`` as JSON (compared as parsed JSON)."""
    wanted = json.loads(json.dumps(job))

    def matches(marker: Path) -> bool:
        try:
            return bool(json.loads(marker.read_text()) == wanted)
        except (ValueError, OSError):
            return False

    return matches


def _other_results(out: Path) -> NeuromaskError:
    return OutputExistsError(
        f"Output folder {out} already holds other results. Choose another folder, or "
        "pass --overwrite to replace them."
    )


def empty_folder(out: Path) -> None:
    """Remove everything inside ``out`` (the folder itself stays)."""
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def claim_output_dir(
    out: Path,
    marker: str,
    content: str,
    *,
    same: Callable[[Path], bool],
    overwrite: bool = False,
    restart: bool = False,
    allow_unmarked: bool = False,
    mismatch: Callable[[Path], NeuromaskError] | None = None,
) -> bool:
    """Claim ``out`` for a job described by ``content``, written to ``out/marker``.

    - ``out/marker`` exists and ``same(out/marker)``: the job resumes (True is returned);
      with ``restart`` the folder is emptied instead and the job starts afresh.
    - Another job's marker: ``mismatch(out)`` is raised (default: "already holds other
      results"), unless ``overwrite``, which empties the folder.
    - No marker but other files: refused the same way, unless ``allow_unmarked`` (the
      folder is shared with other outputs, as a training folder is with its runs) or
      ``overwrite``.

    The marker is written (atomically) whenever the job does not resume.
    """
    path = out / marker
    busy = out.is_dir() and not is_empty_dir(out)
    if path.is_file() and same(path):
        if not restart:
            return True
        empty_folder(out)
    elif busy and not (allow_unmarked and not path.exists()):
        if not overwrite:
            raise (mismatch or _other_results)(out)
        empty_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(content)
    return False


def claim_job_dir(out: Path, job: dict, overwrite: bool, record: str = "job.json") -> None:
    """Claim ``out`` for a job described by the JSON mapping ``job`` in ``out/record``."""
    claim_output_dir(
        out, record, json.dumps(job, indent=2), same=same_json(job), overwrite=overwrite
    )
