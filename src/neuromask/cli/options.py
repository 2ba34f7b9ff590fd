"""Options shared by several commands, defined once (name, type, default and help)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from neuromask.train.config import DEVICES

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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
