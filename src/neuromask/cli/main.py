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
import importlib
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


#: Subcommand -> (module of ``neuromask.cli``, attribute). Each module is imported when its
#: command runs or shows its own help: they import torch, nilearn and the rest, which took
#: 8 s on the 2-core machine, so that ``neuromask --help`` and ``--version`` did too.
_COMMANDS: dict[str, tuple[str, str]] = {
    "atlas": ("atlas_commands", "atlas"),
    "compare": ("compare_commands", "compare"),
    "demo": ("demo_command", "demo"),
    "evaluate": ("train_commands", "evaluate"),
    "localize": ("localize_commands", "localize"),
    "mask": ("mask_commands", "mask"),
    "qc": ("data_commands", "qc"),
    "report": ("report_commands", "report"),
    "sanity": ("sanity_commands", "sanity"),
    "search": ("train_commands", "search"),
    "split": ("data_commands", "split"),
    "study": ("study_commands", "study"),
    "summary": ("train_commands", "summary"),
    "synth": ("data_commands", "synth"),
    "train": ("train_commands", "train"),
}
#: What ``neuromask --help`` says of each subcommand without importing it: its docstring's
#: first sentence, shortened where that is long.
SUMMARIES: dict[str, str] = {
    "atlas": "The AAL2 atlas that ROI similarities and rankings use.",
    "compare": "Compare masks: ROI-based cosine similarity, the k densest ROIs of each "
    "mask, and with --models the prob_CNN metric.",
    "demo": "Run the whole method into OUT, on two synthetic 3 mm cohorts with known atrophy.",
    "evaluate": "Score the model of MODEL_DIR on the sessions of TSV.",
    "localize": "Score MAP_OR_MASK against a synthetic cohort's atrophied regions.",
    "mask": "Optimised 3D perturbation masks of a trained CNN (meaningful perturbation).",
    "qc": "Quality-check the GM maps of the sessions in TSV.",
    "report": "Write one HTML page with every table and figure of STUDY_DIR.",
    "sanity": "Trust the explanation: group mask and attribution methods, on the CNN and "
    "on copies re-initialised layer by layer.",
    "search": "Random search over the paper's space, one worker per call.",
    "split": "Split the sessions of TSV into a matched test set and K subject-level folds.",
    "study": "Run one of the paper's studies (or all) and write its tables into OUT/NAME/.",
    "summary": "Balanced accuracies of every split and run of TRAIN_OUT, with their mean and SD.",
    "synth": "Write a synthetic CAPS cohort with known ground truth to OUT.",
    "train": "Train CNNs on every split of SPLIT_DIR; write OUT/split-<k>/run-<r>/.",
}


class _Group(click.Group):
    """The top-level group: subcommands load on first use (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name]
            loaded = importlib.import_module(f"neuromask.cli.{module}")
            self.add_command(getattr(loaded, attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        # a help-only Command shortens each summary to the width, as click does
        rows = [(n, click.Command(n, help=SUMMARIES[n]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def all_commands() -> dict[str, click.Command]:
    """Every subcommand by name, each loaded (for tests and documentation checks)."""
    ctx = click.Context(cli)
    found = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def main() -> None:
    cli(prog_name="neuromask")
