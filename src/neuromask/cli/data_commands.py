"""Commands that make and prepare data: ``synth``, ``qc`` and ``split``."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import build_settings, option_names, overwrite_option, quiet_option
from neuromask.data.cohorts import COHORTS
from neuromask.data.qc import QCThresholds, qc_summary
from neuromask.data.split import SplitConfig, make_splits, write_splits
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.errors import ParameterError
from neuromask.io.participants import read_participants
from neuromask.jobs.qc import quality_check_folder

_OVERWRITE = overwrite_option(help="Replace OUT if it already holds results.")
_QUIET = quiet_option()
#: The library's defaults, shown and used by the commands.
_SYNTH, _QC, _SPLIT = SynthConfig(), QCThresholds(), SplitConfig()


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--voxel-size",
    type=float,
    default=_SYNTH.voxel_size,
    metavar="MM",
    help="Voxel size in mm. 1.5 gives the Clinica grid (121x145x121); 3 or 6 keep its field of view.",
)
@click.option(
    "--subjects-per-class",
    type=click.IntRange(min=1),
    default=_SYNTH.subjects_per_class,
    metavar="N",
    help="Subjects with AD and cognitively normal subjects, each.",
)
@click.option(
    "--sessions",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    default=_SYNTH.sessions,
    metavar="MIN MAX",
    help="Sessions per subject, drawn uniformly in [MIN, MAX].",
)
@click.option(
    "--cohort",
    type=click.Choice(sorted(COHORTS)),
    default=_SYNTH.cohort,
    help="Demographics, visit schedule and site effect: ADNI-like, or AIBL-like (independent cohort).",
)
@click.option(
    "--atrophy-rois",
    default=",".join(_SYNTH.atrophy_rois),
    metavar="NAME,NAME",
    help="AAL2 ROIs where AD subjects lose GM: full names or stems (both hemispheres), "
    "or 'random:K' for K ROIs drawn from the seed.",
)
@click.option(
    "--atrophy-strength",
    type=click.FloatRange(0, 1, max_open=True),
    default=_SYNTH.atrophy_strength,
    help="Fraction of GM lost inside the ROIs at severity 1.",
)
@click.option(
    "--atrophy-heterogeneity",
    type=click.FloatRange(min=0),
    default=_SYNTH.atrophy_heterogeneity,
    metavar="H",
    help="Give each AD subject its own mix of the atrophied regions (AD subtypes): region "
    "k is weighted by exp(H z - H^2/2), z ~ N(0, 1) per subject and region (0: every "
    "subject alike). The weights go to ground_truth/subject_atrophy.tsv.",
)
@click.option(
    "--atrophy-blobs",
    type=int,
    default=_SYNTH.atrophy_blobs,
    metavar="K",
    help="Place the atrophy as K smooth blobs centred on gray matter at random, across ROI "
    "boundaries, instead of whole ROIs (0: the ROIs of --atrophy-rois). The truth is then "
    "voxel-level: the atrophy map at half its peak.",
)
@click.option(
    "--blob-radius-mm",
    type=float,
    default=_SYNTH.blob_radius_mm,
    metavar="MM",
    help="SD of each blob, in mm.",
)
@click.option(
    "--qc-failures",
    type=click.IntRange(min=0),
    default=_SYNTH.qc_failures,
    metavar="K",
    help="Sessions to corrupt as failed segmentations: the first gets a block of "
    "non-brain tissue segmented as GM, the others a maximum below 0.95.",
)
@click.option(
    "--seed",
    type=int,
    default=_SYNTH.seed,
    help="Random seed; the same seed gives the same cohort.",
)
@_OVERWRITE
@_QUIET
def synth(
    out: Path,
    voxel_size: float,
    subjects_per_class: int,
    sessions: tuple[int, int],
    cohort: str,
    atrophy_rois: str,
    atrophy_strength: float,
    atrophy_heterogeneity: float,
    atrophy_blobs: int,
    blob_radius_mm: float,
    qc_failures: int,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a synthetic CAPS cohort with known ground truth to OUT.

    OUT receives caps/ (t1-volume GM maps), participants.tsv and ground_truth/
    (atrophy map, atrophied ROIs, per-session severity and injected QC failures, settings).
    """
    config = build_settings(
        SynthConfig,
        voxel_size=voxel_size,
        subjects_per_class=subjects_per_class,
        sessions=sessions,
        cohort=cohort,
        atrophy_rois=tuple(r for r in atrophy_rois.split(",") if r.strip()),
        atrophy_strength=atrophy_strength,
        atrophy_heterogeneity=atrophy_heterogeneity,
        atrophy_blobs=atrophy_blobs,
        blob_radius_mm=blob_radius_mm,
        qc_failures=qc_failures,
        seed=seed,
    )
    try:
        result = generate_cohort(config, out, overwrite=overwrite, progress=not quiet)
    except ParameterError as exc:  # the ROI names are checked against the atlas there
        raise ParameterError(option_names(str(exc), ["atrophy_rois"])) from None
    console.print(
        f"Wrote {result.n_sessions} sessions of {result.n_subjects} subjects "
        f"({cohort.upper()}-like, {config.grid}) to [bold]{out}[/bold]\n"
        f"  atrophied ROIs: {', '.join(result.atrophy_rois)}"
    )


@click.command()
@click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("tsv", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--dartel-group",
    default=None,
    metavar="G",
    help="Check the DARTEL maps of group G (modulated) instead of the segmentation maps.",
)
@click.option(
    "--min-max-gm",
    type=float,
    default=_QC.min_max_gm,
    help="Reject a map whose maximum is below this.",
)
@click.option(
    "--nonzero-range",
    type=(float, float),
    default=(_QC.min_nonzero, _QC.max_nonzero),
    metavar="MIN MAX",
    help="Reject a map whose fraction of non-zero voxels is outside [MIN, MAX].",
)
@_OVERWRITE
@_QUIET
def qc(
    caps: Path,
    tsv: Path,
    out: Path,
    dartel_group: str | None,
    min_max_gm: float,
    nonzero_range: tuple[float, float],
    overwrite: bool,
    quiet: bool,
) -> None:
    """Quality-check the GM maps of the sessions in TSV.

    Writes OUT/qc.tsv (metrics, pass flag, reason), OUT/pass.tsv (the sessions that pass,
    in the input's columns), OUT/qc.png (a passed and a rejected map) and OUT/qc.json.
    """
    thresholds = QCThresholds(min_max_gm, *nonzero_range)
    result = quality_check_folder(
        caps,
        tsv,
        out,
        thresholds,
        dartel_group=dartel_group,
        overwrite=overwrite,
        progress=not quiet,
    )
    table = result.table
    print_table(qc_summary(table), title="Quality check")
    for row in table[~table["qc_pass"]].itertuples():
        console.print(f"  rejected {row.participant_id} {row.session_id}: {row.qc_reason}")
    console.print(f"Wrote {out / 'qc.tsv'}, {out / 'pass.tsv'} and {out / 'qc.png'}")


@click.command()
@click.argument("tsv", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--test-subjects-per-class",
    type=click.IntRange(min=1),
    default=_SPLIT.test_subjects_per_class,
    metavar="N",
    help="Test subjects per diagnosis, matched on age and sex to the rest.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=_SPLIT.folds,
    metavar="K",
    help="Cross-validation folds.",
)
@click.option("--seed", type=int, default=_SPLIT.seed, help="Random seed (the paper's is 2).")
@click.option(
    "--p-threshold",
    type=click.FloatRange(0, 1, max_open=True),
    default=_SPLIT.p_threshold,
    help="Redraw the test set until the age t-test and sex chi2 p-values both reach this.",
)
@_OVERWRITE
def split(
    tsv: Path,
    out: Path,
    test_subjects_per_class: int,
    folds: int,
    seed: int,
    p_threshold: float,
    overwrite: bool,
) -> None:
    """Split the sessions of TSV into a matched test set and K subject-level folds.

    Writes OUT/test.tsv, OUT/train_val.tsv, OUT/split-<k>/train.tsv,
    OUT/split-<k>/validation.tsv, OUT/summary.tsv and OUT/split.json.
    """
    sessions = read_participants(tsv)
    config = build_settings(
        SplitConfig,
        test_subjects_per_class=test_subjects_per_class,
        folds=folds,
        seed=seed,
        p_threshold=p_threshold,
    )
    result = make_splits(sessions, config)
    write_splits(result, out, overwrite=overwrite, source=str(tsv))
    summary = result.summary()
    print_table(
        summary[
            summary["set"].isin(["test", "train_val"]) | summary["set"].str.endswith("validation")
        ],
        title="Split",
    )
    for name, values in result.matching.items():
        console.print(f"  {name}: age p={values['p_age']:.3f}, sex p={values['p_sex']:.3f}")
    console.print(f"Wrote {out}")
