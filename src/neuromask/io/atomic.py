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
