"""The one way an output folder is claimed by a job.

A job marks its output folder with a file (``mask_job.json``, ``sanity_job.json``,
``study.toml``, a run's ``config.json``) that describes what it computes. Rerunning the
same job finds its own marker and resumes; a different job is refused, or, with
``overwrite``, the folder's contents are removed first, and only if the folder holds
that command's marker and lies inside none of the command's inputs. No output folder may
be, or hold, an input. Every command that writes a folder it may later resume goes
through :func:`claim_output_dir`; commands that write a folder in one go use
:func:`neuromask.io.atomic.staged_output_dir`, under the same rules.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from neuromask.errors import NeuromaskError, OutputExistsError
from neuromask.io.atomic import atomic_path, is_empty_dir, refuse_file_in_the_way


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


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_an_input(
    out: Path, inputs: Iterable[str | os.PathLike[str] | None], *, removing: bool = False
) -> None:
    """Refuse an output folder that is one of the command's inputs or holds one; when
    its contents would be removed (``removing``), refuse one that lies inside an input
    too."""
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if _inside(source, target):
            what = "is" if source == target else "holds"
            raise OutputExistsError(
                f"Output {out} {what} the input {given}; neuromask never writes over its "
                "inputs. Choose another output."
            )
        if removing and source.is_dir() and _inside(target, source):
            raise OutputExistsError(
                f"Output {out} lies inside the input {given}; neuromask never removes or "
                "replaces anything inside its inputs. Choose another output."
            )


def refuse_unmarked(out: Path, marker: str | None) -> None:
    """Refuse to remove the contents of ``out`` unless it holds ``marker``: the record
    that the same command writes into its output, so that --overwrite only ever replaces
    what neuromask itself wrote there."""
    if marker is None or not (out / marker).is_file():
        expected = f" (it would hold {marker})" if marker else ""
        raise OutputExistsError(
            f"Output folder {out} is not an output of this command{expected}; --overwrite "
            "only replaces a folder that neuromask wrote. Remove it yourself, or choose "
            "another folder."
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
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    dry_run: bool = False,
) -> bool:
    """Claim ``out`` for a job described by ``content``, written to ``out/marker``.

    - ``out/marker`` exists and ``same(out/marker)``: the job resumes (True is returned);
      with ``restart`` the folder is emptied instead and the job starts afresh.
    - Another job's marker: ``mismatch(out)`` is raised (default: "already holds other
      results"), unless ``overwrite``, which empties the folder.
    - No marker but other files: refused the same way, unless ``allow_unmarked`` (the
      folder is shared with other outputs, as a training folder is with its runs);
      ``overwrite`` never empties a folder without the marker.
    - ``out`` may never be, or hold, one of ``inputs``; a folder inside an input is
      never emptied.

    The marker is written (atomically) whenever the job does not resume. ``dry_run``
    makes every check and changes nothing: a job calls it before reading its inputs,
    so that a refusal comes at once, and claims for real once it can start.
    """
    refuse_file_in_the_way(out)
    inputs = list(inputs)
    path = out / marker
    busy = out.is_dir() and not is_empty_dir(out)
    check_not_an_input(out, inputs)
    if path.is_file() and same(path):
        if not restart:
            return True
        _empty_own_folder(out, marker, inputs, dry_run)
    elif busy and not (allow_unmarked and not path.exists()):
        if not overwrite:
            raise (mismatch or _other_results)(out)
        _empty_own_folder(out, marker, inputs, dry_run)
    if dry_run:
        return False
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(content)
    return False


def _empty_own_folder(
    out: Path, marker: str, inputs: Iterable[str | os.PathLike[str] | None], dry_run: bool
) -> None:
    check_not_an_input(out, inputs, removing=True)
    refuse_unmarked(out, marker)
    if not dry_run:
        empty_folder(out)


def claim_job_dir(
    out: Path,
    job: dict[str, Any],
    overwrite: bool,
    record: str = "job.json",
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    dry_run: bool = False,
) -> None:
    """Claim ``out`` for a job described by the JSON mapping ``job`` in ``out/record``."""
    claim_output_dir(
        out,
        record,
        json.dumps(job, indent=2),
        same=same_json(job),
        overwrite=overwrite,
        inputs=inputs,
        dry_run=dry_run,
    )
