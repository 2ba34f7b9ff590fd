"""``neuromask demo``: the whole method on an embedded synthetic default."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console
from neuromask.demo import DemoConfig, run_demo


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default="neuromask-demo")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already holds results.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo(out: Path, overwrite: bool, quiet: bool) -> None:
    """Run the pipeline end to end on two small synthetic cohorts (3 mm) into OUT.

    Today this is: synthesis of an ADNI-like and an AIBL-like cohort with injected
    failures, quality check, and the matched split into test set and folds.
    """
    result = run_demo(DemoConfig(), out, overwrite=overwrite, progress=not quiet)
    console.rule("neuromask demo")
    for line in result.lines():
        console.print(line)
