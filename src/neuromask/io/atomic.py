"""Atomic output: write to a temporary name, rename when complete.

A crash or a user error never leaves a half-written file or folder behind under its
final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from neuromask.errors import NeuromaskWarning, OutputExistsError


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
    refuse_file_in_the_way(out)
    if out.exists() and not overwrite and not is_empty_dir(out):
        raise OutputExistsError(
            f"Output folder {out} already exists and is not empty. "
            f"Choose another folder, or pass {option} to replace it."
        )
    return out


def refuse_file_in_the_way(out: Path) -> None:
    """Refuse an output folder that is a file, or would lie under one."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "is a file" if path == out else f"lies under {path}, which is a file"
            raise OutputExistsError(f"Output folder {out} {where}, not a folder.")
        if path.exists():
            return


def make_public(folder: Path) -> None:
    """Give a folder made by ``mkdtemp`` (mode 0700) the usual permissions (umask)."""
    os.chmod(folder, 0o777 & ~_umask())


@contextlib.contextmanager
def staged_output_dir(
    out: str | os.PathLike[str],
    overwrite: bool = False,
    option: str = "--overwrite",
    *,
    marker: str | None = None,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """Build an output folder under a temporary name and move it to ``out`` when complete.

    ``out`` must be absent or empty unless ``overwrite`` is true, in which case the old
    folder is replaced only once the new one is complete, and only if it holds
    ``marker`` (the record this command writes into its output: the folder is one it
    wrote). ``out`` may never be, or hold, one of ``inputs``, nor be replaced when it lies
    inside one. On any error the temporary folder is removed and ``out`` is left as it
    was.
    """
    from neuromask.io.claim import check_not_an_input, refuse_unmarked

    final = check_output_dir(out, overwrite, option)
    replacing = final.is_dir() and not is_empty_dir(final)
    check_not_an_input(final, inputs, removing=replacing)
    if replacing:
        refuse_unmarked(final, marker)
    final.parent.mkdir(parents=True, exist_ok=True)
    warn_of_stale_staging(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    make_public(staging)
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


def warn_of_stale_staging(final: Path) -> None:
    """Name the staging folders an earlier run of the same output left behind.

    A command stopped by SIGKILL (or a lost machine) cannot remove its staging folder.
    They are not removed here, since another run may be writing the same output now;
    the user is told where they are and how large."""
    stale = sorted(final.parent.glob(f".{glob.escape(final.name)}.*.partial"))
    if not stale:
        return
    size = sum(
        _size_or_zero(Path(root) / name)
        for d in stale
        for root, _, files in os.walk(d)
        for name in files
    )
    names = ", ".join(str(d) for d in stale)
    warnings.warn(
        f"{len(stale)} unfinished output folder(s) of an earlier, killed run of this "
        f"command lie beside {final} ({size / 2**20:.0f} MiB): {names}. Delete them "
        "unless another run is writing this output now.",
        NeuromaskWarning,
        stacklevel=3,
    )


def _size_or_zero(path: Path) -> int:
    """A file's size; 0 for a file gone meanwhile (the run that owns a staging folder
    may be removing it while we look; ``os.walk`` skips folders gone the same way)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
