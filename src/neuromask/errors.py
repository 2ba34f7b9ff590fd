"""Errors caused by user input.

Every error a user can fix derives from :class:`NeuromaskError`. The command line prints
its message, without a traceback, and exits with status 1. Each class also derives from
the built-in exception a Python caller would expect, so ``except ValueError`` or
``except FileNotFoundError`` keep working.
"""

from __future__ import annotations


class NeuromaskError(Exception):
    """Base class of every error that the user can fix by changing the input."""


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
