"""Typed dataclass configs read from TOML (no code evaluated), checked key by key.

Unknown keys and values of the wrong type raise a :class:`ConfigError` that names the
file and the key (``model.dropout``), what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from neuromask.errors import NeuromaskError, missing_file

T = TypeVar("T")


class ConfigError(NeuromaskError, ValueError):
    """A configuration file or mapping has unknown keys or values of the wrong type."""


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "Config file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None


def from_mapping(cls: type[T], data: dict[str, Any], *, source: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking every key and type.

    Missing keys take the dataclass defaults. Nested dataclass fields take tables.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{(' in ' + prefix.rstrip('.')) if prefix else ''}: {', '.join(fields)}"
        )
    values = {
        name: _convert(hints[name], value, source, prefix + name) for name, value in data.items()
    }
    try:
        return cls(**values)
    except NeuromaskError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def to_mapping(obj: Any) -> Any:
    """A dataclass as plain dicts, lists and scalars (for JSON and TOML)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, source=source, prefix=key + ".")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _convert(option, value, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            f"{source}: {key} must be {' or '.join(_describe(a) for a in args)}, got {value!r}"
        )
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: {key} must be empty, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this reader does not know
        raise ConfigError(f"{source}: {key} has an unsupported type {hint!r}")
    raise ConfigError(f"{source}: {key} must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if dataclasses.is_dataclass(hint):
        return "a table"
    if typing.get_origin(hint) is tuple:
        return "a list"
    return names.get(hint, str(hint))
