"""Entry point of the ``neuromask`` command.

User errors (:class:`neuromask.errors.NeuromaskError`) are printed as one message, with
no traceback, and exit with status 1. Usage errors exit with status 2 (click's rule).
"""

from __future__ import annotations

import sys

import click

from neuromask import __version__
from neuromask.errors import NeuromaskError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NeuromaskError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)
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


_register()


def main() -> None:
    from neuromask.runtime import tune_allocator

    tune_allocator()
    cli(prog_name="neuromask")
