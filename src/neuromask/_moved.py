"""Old import paths that still work: each module that moved leaves a forwarder behind.

A forwarder warns once, when it is imported, with a :class:`DeprecationWarning` that names
the new place, and then hands every attribute over to the new module.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward(old: str, new: str, *more: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that serves the attributes of ``new`` (and of
    ``more`` modules, for a module that was split)."""
    warnings.warn(
        f"{old} has moved to {' and '.join((new, *more))}; import it from there (the old "
        "path will be removed in a future release).",
        DeprecationWarning,
        stacklevel=3,
    )
    modules = [importlib.import_module(name) for name in (new, *more)]

    def __getattr__(name: str) -> Any:
        for module in modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
