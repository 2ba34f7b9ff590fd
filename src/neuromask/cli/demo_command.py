"""``neuromask demo``: the whole method on an embedded synthetic default."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console
from neuromask.cli.options import device_option, overwrite_option, quiet_option


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default="neuromask-demo")
@click.option(
    "--config",
    "config_name",
    default="small",
    help="Study settings: a preset shipped with neuromask (small, paper) or a TOML file.",
)
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Ground truth for a study on a CAPS folder of synthetic data "
    "[default: the synthetic cohort's own].",
)
@device_option(help="Where to run.")
@overwrite_option(help="Replace OUT instead of resuming it.")
@quiet_option(help="No progress bars.")
def demo(
    out: Path, config_name: str, truth: Path | None, device: str, overwrite: bool, quiet: bool
) -> None:
    """Run the whole method into OUT, on two synthetic 3 mm cohorts with known atrophy
    (9 to 30 minutes on 2 CPU cores): synthesis, quality check and matched split, CNN
    training over folds and runs, group masks on both cohorts, session masks, the
    mask-hyperparameter grid, every study, and the HTML report. Ends with the CNN's
    balanced accuracies and the ROIs the group mask found next to the ground truth.

    An interrupted demo resumes when run again on the same OUT.
    """
    from neuromask.demo import run_demo

    result = run_demo(
        out,
        config=config_name,
        truth=truth,
        overwrite=overwrite,
        device=device,
        progress=not quiet,
    )
    console.rule("neuromask demo")
    for line in result.lines():
        console.print(line, highlight=False)
