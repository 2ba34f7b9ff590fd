"""Options shared by several commands, defined once (name, type, default and help)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from neuromask.train.config import DEVICES

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
T = TypeVar("T")


def device_option(help: str = "Where to run.") -> Decorator:
    return click.option("--device", type=click.Choice(list(DEVICES)), default="auto", help=help)


def quiet_option(help: str = "No progress bars.") -> Decorator:
    return click.option("--quiet", "-q", is_flag=True, help=help)


def overwrite_option(help: str = "Replace OUT if it already holds results.") -> Decorator:
    return click.option("--overwrite", is_flag=True, help=help)


def cache_dir_option(
    help: str = "Keep the loaded images in this folder (.npy) for the next run.",
) -> Decorator:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def top_option(help: str = "ROIs compared with the truth.", default: int = 5) -> Decorator:
    return click.option("-k", "--top", "k", type=int, default=default, help=help)


def build_settings(cls: Callable[..., T], **values: Any) -> T:
    """``cls(**values)``, its errors speaking of the command's options rather than the
    dataclass's fields (``--voxel-size`` rather than ``SynthConfig: voxel_size``)."""
    from neuromask.errors import ParameterError

    try:
        return cls(**values)
    except ParameterError as exc:
        message = str(exc).removeprefix(f"{getattr(cls, '__name__', '')}: ")
        raise ParameterError(option_names(message, values)) from None


def option_names(message: str, fields: Iterable[str]) -> str:
    """``message`` with the first mention of each field written as its option.

    >>> option_names("atrophy_rois: 'random:K' needs an integer K", ["atrophy_rois"])
    "--atrophy-rois: 'random:K' needs an integer K"
    """
    for field in sorted(fields, key=len, reverse=True):
        message = re.sub(rf"(?<![-\w]){field}\b", "--" + field.replace("_", "-"), message, count=1)
    return message


def maps_options(argument: str = "model_dir") -> Decorator:
    """``--split`` and ``--selection-metric``, which choose one model of a ClinicaDL MAPS
    given where a command takes a model folder: the command receives ``argument`` (a
    folder, or a tuple of folders) as the folder of that one model
    (``MAPS/split-<k>/best-<metric>``), and never sees the two options."""
    import functools

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapped(*args: Any, split: int | None, selection_metric: str | None, **kwargs: Any):
            from neuromask.train.model_folder import model_folder

            value = kwargs[argument]
            if isinstance(value, tuple):
                kwargs[argument] = tuple(model_folder(v, split, selection_metric) for v in value)
            elif value is not None:
                kwargs[argument] = model_folder(value, split, selection_metric)
            return command(*args, **kwargs)

        options = [
            click.option(
                "--split",
                type=click.IntRange(min=0),
                default=None,
                help="With a ClinicaDL MAPS: the split whose model to use (needed when the "
                "MAPS holds several).",
            ),
            click.option(
                "--selection-metric",
                default=None,
                help="With a ClinicaDL MAPS: the model selected on this metric "
                "(split-<k>/best-<metric>), e.g. loss or balanced_accuracy. Default: loss.",
            ),
        ]
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped

    return decorate
