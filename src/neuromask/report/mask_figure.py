"""Moved to :mod:`neuromask.figures.masks`; this path still works and warns."""

from neuromask._moved import forward

__getattr__ = forward(__name__, "neuromask.figures.masks")
