"""Entry point of the ``neuromask`` command.

User errors (:class:`neuromask.errors.NeuromaskError`) are printed as one message, with
no traceback, and exit with status 1. Usage errors exit with status 2 (click's rule).

SIGTERM (``kill``, or a batch scheduler at its time limit: SLURM sends it some seconds
before SIGKILL) stops a command as Ctrl-C does: the exception unwinds, so staging folders
and temporary files are removed, study workers are stopped and a study's running job is
recorded as failed (a rerun runs it again); what was complete and every checkpoint stay.
The command exits with status 143 (128 + 15). Python's default for SIGTERM ends the
process at once and leaves the staging folder of an unfinished output behind.
"""

from __future__ import annotations

# The allocator is tuned before anything imports torch (it was tuned in main(), after
# the imports). Side by side, a training epoch of the paper CNN at 1.5 mm on the 2-core
# CPU took 14.4 s this way and 15.0 s the other (benchmarks/full_grid_cpu.py).
from neuromask.runtime import tune_allocator

tune_allocator()

import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import TextIO

import click

from neuromask import __version__
from neuromask.errors import NeuromaskError, NeuromaskWarning


def os_error_message(exc: OSError) -> str:
    """One line for an error of the operating system, naming the file."""
    reason = exc.strerror or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{reason}: {' -> '.join(names)}" if names else reason


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """neuromask's own warnings on one line; others as Python shows them."""
    if issubclass(category, NeuromaskWarning):
        click.secho(f"Warning: {message}", fg="yellow", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


class Terminated(KeyboardInterrupt):
    """The command received SIGTERM; raised where it runs, as Ctrl-C raises
    KeyboardInterrupt, so that the same clean-up runs."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Once: a scheduler signals every process of a job, and a study's parent also
    # terminates its workers, so a second SIGTERM must not break off the clean-up
    # the first one started (SIGKILL still ends a process that hangs).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (main thread only: Python
    runs signal handlers there; elsewhere the default stays)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            with warnings.catch_warnings(), sigterm_unwinds():
                warnings.simplefilter("default", NeuromaskWarning)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except NeuromaskError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)
        except OSError as exc:  # a read-only or full disk, a missing permission, ...
            click.secho(f"Error: {os_error_message(exc)}", fg="red", err=True)
            sys.exit(1)
        except Terminated:
            click.secho(
                "Terminated (SIGTERM). Finished work and checkpoints are kept: run the "
                "same command again to finish (long jobs resume from their checkpoints).",
                fg="yellow",
                err=True,
            )
            sys.exit(143)
        except KeyboardInterrupt:
            click.secho("Interrupted.", fg="yellow", err=True)
            sys.exit(130)


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(__version__, prog_name="neuromask")
def cli() -> None:
    """neuromask: train 3D CNNs on gray-matter maps, explain them with optimised
    perturbation masks, and measure how robust both are.

    Data come as a Clinica CAPS folder (t1-volume GM maps) with a participants TSV, or
    from `neuromask synth`, which writes synthetic cohorts with known ground truth.
    """


def _register() -> None:
    from neuromask.cli import (
        atlas_commands,
        compare_commands,
        data_commands,
        demo_command,
        localize_commands,
        mask_commands,
        report_commands,
        sanity_commands,
        study_commands,
        train_commands,
    )

    cli.add_command(data_commands.synth)
    cli.add_command(data_commands.qc)
    cli.add_command(data_commands.split)
    cli.add_command(train_commands.train)
    cli.add_command(train_commands.evaluate)
    cli.add_command(train_commands.summary)
    cli.add_command(train_commands.search)
    cli.add_command(mask_commands.mask)
    cli.add_command(compare_commands.compare)
    cli.add_command(localize_commands.localize)
    cli.add_command(sanity_commands.sanity)
    cli.add_command(report_commands.report)
    cli.add_command(study_commands.study)
    cli.add_command(demo_command.demo)
    cli.add_command(atlas_commands.atlas)


_register()


def main() -> None:
    cli(prog_name="neuromask")
