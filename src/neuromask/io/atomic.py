"""Atomic output: write to a temporary name, rename when complete.

A crash or a user error never leaves a half-written file or folder behind under its
final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from neuromask.errors import OutputExistsError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.tsv``) so that writers
    that look at the extension behave as for the final name.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "a.txt").read_text()
    'done'
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp's 0600 would hide results from colleagues
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def check_output_dir(
    out: str | os.PathLike[str], overwrite: bool, option: str = "--overwrite"
) -> Path:
    """Refuse an output folder that already holds something, unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite and not is_empty_dir(out):
        raise OutputExistsError(
            f"Output folder {out} already exists and is not empty. "
            f"Choose another folder, or pass {option} to replace it."
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output path {out} exists and is not a folder.")
    return out


@contextlib.contextmanager
def staged_output_dir(
    out: str | os.PathLike[str], overwrite: bool = False, option: str = "--overwrite"
) -> Iterator[Path]:
    """Build an output folder under a temporary name and move it to ``out`` when complete.

    ``out`` must be absent or empty unless ``overwrite`` is true, in which case the old
    folder is replaced only once the new one is complete. On any error the temporary
    folder is removed and ``out`` is left as it was.
    """
    final = check_output_dir(out, overwrite, option)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, trash / "old")
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)


def claim_job_dir(out: Path, job: dict, overwrite: bool, record: str = "job.json") -> None:
    """An output folder holds one job, described by ``job`` in ``out/record``: the same
    job resumes in it, another is refused unless ``overwrite`` (which empties it)."""
    import json

    path = out / record
    if out.exists() and any(out.iterdir()):
        same = path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(job))
        if not same and not overwrite:
            raise OutputExistsError(
                f"Output folder {out} already holds other results. Choose another folder, or "
                "pass --overwrite to replace them."
            )
        if not same:
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(job, indent=2))
