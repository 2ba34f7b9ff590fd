"""Moved to :mod:`neuromask.jobs.sanity`; this path still works and warns."""

from neuromask._moved import forward

__getattr__ = forward(__name__, "neuromask.jobs.sanity")
