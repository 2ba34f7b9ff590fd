"""Moved to :mod:`neuromask.jobs.masks` and :mod:`neuromask.jobs.trained_model`; this path still works and warns."""

from neuromask._moved import forward

__getattr__ = forward(__name__, "neuromask.jobs.masks", "neuromask.jobs.trained_model")
