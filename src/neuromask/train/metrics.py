"""Moved to :mod:`neuromask.train.classification`; this path still works and warns."""

from neuromask._moved import forward

__getattr__ = forward(__name__, "neuromask.train.classification")
