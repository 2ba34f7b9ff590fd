"""Old import paths that still work: each module that moved leaves a forwarder behind.

A forwarder warns once, when it is imported, with a :class:`DeprecationWarning` that names
the new place, and then hands every attribute over to the new module. Names that moved
out of a module that stays (:func:`forward_names`) warn when they are used.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any


def forward(old: str, new: str, *more: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that serves the attributes of ``new`` (and of
    ``more`` modules, for a module that was split)."""
    warnings.warn(_moved(old, " and ".join((new, *more))), DeprecationWarning, stacklevel=3)
    modules = [importlib.import_module(name) for name in (new, *more)]

    def __getattr__(name: str) -> Any:
        for module in modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


def forward_names(old: str, new: str, names: Iterable[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old``, a module that stays, serving the ``names``
    that moved to ``new``; each use warns."""
    moved = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(_moved(f"{old}.{name}", new), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__


def _moved(old: str, new: str) -> str:
    return (
        f"{old} has moved to {new}; import it from there (the old path will be removed in a "
        "future release)."
    )
