"""``neuromask report``: a self-contained HTML report of a study folder."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console
from neuromask.cli.options import top_option


@click.command()
@click.argument("study_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write [default: STUDY_DIR/report/report.html].",
)
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="A ground_truth folder for a study on a CAPS folder of synthetic data "
    "[default: STUDY_DIR/data/adni/synth/ground_truth when present].",
)
@top_option(help="ROIs compared with the truth.")
def report(study_dir: Path, out: Path | None, truth: Path | None, k: int) -> None:
    """Write one HTML page with every table and figure of STUDY_DIR (a folder of
    `neuromask study`): settings, seeds and software versions, quality check and split,
    CNN balanced accuracies and training curves, group masks with the ground truth,
    mask hyperparameters, session masks, folds vs runs, and the sanity checks when
    STUDY_DIR/sanity exists. Figures are embedded and also written as PNG next to it.

    Example: neuromask report study-small
    """
    from neuromask.report.study_report import build_report

    result = build_report(study_dir, out, truth=truth, k=k)
    console.print(
        f"Report with {result.n_tables} tables and {result.n_figures} figures: "
        f"[bold]{result.path}[/bold]"
    )
    console.print(f"Figures as PNG in {result.figures_dir}")
