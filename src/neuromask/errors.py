"""Errors caused by user input.

Every error a user can fix derives from :class:`NeuromaskError`. The command line prints
its message, without a traceback, and exits with status 1. Each class also derives from
the built-in exception a Python caller would expect, so ``except ValueError`` or
``except FileNotFoundError`` keep working.
"""

from __future__ import annotations


class NeuromaskError(Exception):
    """Base class of every error that the user can fix by changing the input."""


class NeuromaskWarning(UserWarning):
    """Input that is usable but probably not what the user meant; the command line
    prints it on one line."""


class TableError(NeuromaskError, ValueError):
    """A TSV file is malformed: missing columns, bad values, duplicate rows."""


class MissingFileError(NeuromaskError, FileNotFoundError):
    """A file that the input points to does not exist."""


class ImageError(NeuromaskError, ValueError):
    """A NIfTI image cannot be read, or its content is not usable."""


class GridMismatchError(NeuromaskError, ValueError):
    """Two images, or an image and a model, do not share the same voxel grid."""


class OutputExistsError(NeuromaskError, FileExistsError):
    """An output folder already holds results and overwriting was not requested."""


class ParameterError(NeuromaskError, ValueError):
    """A parameter has a value outside its valid range."""


def missing_file(path: object, what: str) -> MissingFileError:
    """The error for a file that is not there: absent, or a folder where a file is
    expected.

    >>> str(missing_file("/", "Image"))
    'Image / is a folder, not a file.'
    """
    from pathlib import Path

    if Path(str(path)).is_dir():
        return MissingFileError(f"{what} {path} is a folder, not a file.")
    return MissingFileError(f"{what} {path} does not exist.")


def shown(value: object) -> str:
    """``value`` as an error message shows it: the repr of the plain Python value, never
    a numpy or torch wrapper (``np.int64(0)``, ``tensor(0.5)``).

    >>> import numpy as np
    >>> shown(np.int64(0)), shown(np.float64(-5.0)), shown("abc")
    ('0', '-5.0', "'abc'")
    """
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        value = item()
    return repr(value)
