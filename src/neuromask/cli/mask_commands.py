"""``neuromask mask group``, ``neuromask mask group-qc`` and ``neuromask mask session``."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import (
    cache_dir_option,
    device_option,
    maps_options,
    overwrite_option,
    quiet_option,
)


def _mask_config(preset: str, config_path: Path | None):
    from neuromask.config import from_mapping, read_toml, to_mapping
    from neuromask.explain import MaskConfig, mask_preset

    config = mask_preset(preset)
    if config_path is not None:
        data = read_toml(config_path)
        config = from_mapping(MaskConfig, {**to_mapping(config), **data}, source=str(config_path))
    return config


_COMMON = [
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="TOML file of mask settings (beta1, beta2, lambda1, lambda2, learning_rate, mu, "
        "score, margin, area, area_weight, upsample, refine_epochs, refine_dilation, "
        "refine_lambda2, refine_area, refine_min_voxels, refine_below, score_normalisation, "
        "score_gradient, floor_above, halo_sigma, halo_depth, trace_depth, jitter, reference, "
        "step_scaling, precision, convolution, max_epochs, patience, tolerance, validate_every, batch_size, "
        "restrict_to_brain, seed, size_epsilon, keep_above, larger_areas, fooled_below, "
        "larger_area_epochs, larger_area_gain, larger_area_skip_above; "
        "see the "
        "README) applied on top of the preset.",
    ),
    overwrite_option(help="Replace OUT if it holds another job's results."),
    device_option(help="Where to run the CNN."),
    cache_dir_option(),
    quiet_option(),
]


def _common(f):
    for option in reversed(_COMMON):
        f = option(f)
    return f


@click.group()
def mask() -> None:
    """Optimised 3D perturbation masks of a trained CNN (meaningful perturbation)."""


def _group_inputs(default_preset: str = "group"):
    """MODEL_DIR CAPS TSV OUT, --validation and --preset: what every group-mask command
    takes."""
    return functools.partial(_add_group_inputs, default_preset=default_preset)


def _add_group_inputs(f, default_preset: str):
    decorators = [
        click.argument("model_dir", type=click.Path(path_type=Path)),
        click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.argument("tsv", type=click.Path(path_type=Path)),
        click.argument("out", type=click.Path(file_okay=False, path_type=Path)),
        click.option(
            "--validation",
            "validation_tsv",
            type=click.Path(path_type=Path),
            default=None,
            help="Sessions whose masking loss drives early stopping. Default: the validation "
            "set of the split the model was trained on.",
        ),
        click.option(
            "--preset",
            type=click.Choice(
                [
                    "group",
                    "group-r23",
                    "group-fast",
                    "group-coarse",
                    "group-mu",
                    "group-sufficient",
                    "group-wide",
                    "voxel",
                    "paper",
                    "small-cohort",
                ]
            ),
            default=default_preset,
            show_default=True,
            help="group: the defaults (a mask 2 times coarser than the images, smoothly "
            "upsampled, that restores 2 % of the brain to healthy tissue, max(X, a CN "
            "training session); logit; at most 12 epochs; then at most 6 epochs of a mask "
            "at the images' resolution inside its region; both again at 3, 4 and 6 % (each "
            "larger area's coarse stage at most 6 epochs; the next area skipped after one "
            "that leaves P(AD) at 0.1 or more) while the mask does not fool its "
            "CNN; then the halo and the gradient "
            "trace, which rank the kept voxels by nearness to the deleted ones and by the "
            "CNN's gradient; oneDNN's convolutions and their input gradients on the CPU); "
            "group-r23: the defaults until "
            "round 24 (20 + 10 epochs, 10 at each larger area, PyTorch's choice of "
            "convolution kernel), which the presets below but small-cohort keep where they "
            "set nothing else; "
            "group-fast: group-r23 with the CNN in bfloat16 and at most "
            "12 + 6 epochs at the first area, 6 + 6 at each larger one (round 20: 0.38 of "
            "its time on a 2-core CPU with AVX-512 BF16; slow on CPUs without bf16 "
            "instructions and on GPUs before Ampere); group-coarse: the coarse mask "
            "alone, at most 40 epochs (the defaults before the fine stage); group-mu: the "
            "coarse mask deleting 5 % with mu = 1; group-sufficient: the coarse mask, grown "
            "to 4 and then 8 % of the brain until the masked validation P(AD) falls below "
            "0.05 (the smallest sufficient area; up to 3 times the cost); group-wide: the "
            "defaults before round 9, whose fine stage may delete wherever the coarse mask "
            "moved (m < 0.95, dilated by one voxel), without the halo and the gradient "
            "trace; voxel: a voxel-level "
            "mask under the size term (lambda1 = lambda2 = 0.001, mu = 1, at most 150 "
            "epochs); paper: the "
            "paper's method exactly (f = P(AD), lambda1 0.0001, lambda2 0.01, the mask over "
            "the whole image); small-cohort: the defaults with the paper's patience 25 and "
            "300 epochs for a smaller cohort.",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


@mask.command("group")
@_group_inputs()
@_common
@maps_options()
def group(
    model_dir: Path,
    caps: Path,
    tsv: Path,
    out: Path,
    validation_tsv: Path | None,
    preset: str,
    config_path: Path | None,
    overwrite: bool,
    device: str,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """One mask for the AD sessions of TSV that the CNN classifies correctly.

    Writes OUT/mask.nii.gz (values above 0.95 set to 1; after the fine stage, the
    voxels it keeps hold 1 % of the coarse mask's depth, the halo takes up to 1 % more
    from those near the deleted regions, and the gradient trace up to 1 % more from
    those where the CNN's score is most sensitive), OUT/mask_raw.nii.gz,
    OUT/mask.png, OUT/top_rois.tsv (five densest AAL2 ROIs), OUT/history.tsv,
    OUT/selection.tsv, OUT/image_losses.tsv and OUT/result.json.
    Rerun the same command after an interruption to resume.
    """
    import pandas as pd

    from neuromask.jobs.masks import UNFOOLED, group_mask_job

    config = _mask_config(preset, config_path)
    result = group_mask_job(
        model_dir,
        caps,
        tsv,
        out,
        config,
        validation_tsv=validation_tsv,
        overwrite=overwrite,
        device=device,
        cache_dir=cache_dir,
        progress=not quiet,
    )
    print_table(
        pd.read_csv(out / "top_rois.tsv", sep="\t"), title="Densest AAL2 ROIs (mean of 1 - m)"
    )
    console.print(
        f"Group mask from {result.n_images} AD sessions ({result.n_validation} for validation): "
        f"{len(result.history)} epochs, mean P(AD) of masked validation images "
        f"{result.validation_p_ad:.3f} -> {out / 'mask.nii.gz'}"
    )
    if len(result.areas_tried) > 1:
        steps = ", ".join(
            f"{100 * float(a['area']):g} % (P(AD) {float(a['p_masked']):.3f})"
            for a in result.areas_tried
        )
        console.print(
            f"It did not fool the CNN at its first area, so it grew (mask setting "
            f"larger_areas): {steps}. The mask is the last area's."
        )
    if result.validation_p_ad >= UNFOOLED:
        console.print(
            f"[yellow]The mask did not fool the CNN (P(AD) {result.validation_p_ad:.2f} after "
            "masking). Where the CNN's score barely moves, the mask's shape comes from the "
            "area and smoothness terms (a compact block), not from the CNN. More epochs, "
            "larger areas (mask setting larger_areas: those tried in turn until the mask "
            "fools the CNN) or --preset group-mu (mu = 1) perturb it more.[/yellow]"
        )


@mask.command("group-qc")
@_group_inputs("group-mu")
@click.option(
    "--iqr-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Remove the sessions whose loss contribution under the first mask lies above "
    "Q3 + this many IQR (3: Tukey's far-out values).",
)
@_common
@maps_options()
def group_qc(
    model_dir: Path,
    caps: Path,
    tsv: Path,
    out: Path,
    validation_tsv: Path | None,
    preset: str,
    iqr_factor: float,
    config_path: Path | None,
    overwrite: bool,
    device: str,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """A group mask with the paper's quality-check step 2.

    Trains a first group mask (OUT/first/), removes the sessions whose loss contribution
    under it stands out (OUT/removed.tsv, with the reason), and trains the final mask
    on the others (OUT/final/; the first mask is final when none stands out).
    OUT/qc_step2.json names the final mask's folder. Rerun the same command after an
    interruption to resume. Its masks default to --preset group-mu (mu = 1): under the
    healthy reference of the group default, a session with a block of non-brain tissue
    segmented as GM did not stand out.
    """
    from neuromask.jobs.qc_step2 import group_mask_qc_job

    result = group_mask_qc_job(
        model_dir,
        caps,
        tsv,
        out,
        _mask_config(preset, config_path),
        factor=iqr_factor,
        validation_tsv=validation_tsv,
        overwrite=overwrite,
        device=device,
        cache_dir=cache_dir,
        progress=not quiet,
    )
    if len(result.removed):
        print_table(
            result.removed[["participant_id", "session_id", "reason"]],
            title="Removed by QC step 2",
        )
    console.print(
        f"{len(result.removed)} of {result.first_sessions} sessions removed; final mask "
        f"from {result.final_sessions} sessions -> {result.final_dir / 'mask.nii.gz'}"
    )


class _BatchSize(click.ParamType):
    """A positive integer, or ``auto`` (0: the mask setting's automatic batch)."""

    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, int) or str(value).strip().lower() != "auto":
            try:
                number = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
            if number < 1:
                self.fail(f"{number} is not a positive integer (or 'auto')", param, ctx)
            return number
        return 0


BATCH_SIZE = _BatchSize()


@mask.command("session")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("tsv", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--batch-size",
    type=BATCH_SIZE,
    default=None,
    help="Sessions optimised at once (one forward/backward pass), or 'auto': as many as "
    "the GPU's free memory holds (1 on the CPU, where batching is not faster). The masks "
    "do not depend on it. Default: the preset's.",
)
@click.option(
    "--preset",
    type=click.Choice(["session", "session-area", "paper-session"]),
    default="session",
    help="session: the paper's early stopping with the group defaults' weights; "
    "session-area: the group defaults' coarse mask on each session (2 % of the brain "
    "restored to healthy tissue, at most 30 epochs), which localised better in a quarter "
    "of the time where it fools the CNN, but did not fool the demo's weak CNN (round 17); "
    "paper-session: the paper's method exactly, its group weights times 100.",
)
@_common
@maps_options()
def session(
    model_dir: Path,
    caps: Path,
    tsv: Path,
    out: Path,
    batch_size: int | None,
    preset: str,
    config_path: Path | None,
    overwrite: bool,
    device: str,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """One mask per AD session of TSV that the CNN classifies correctly.

    Preset session: the paper's early stopping (patience 200, at most 5,000 epochs,
    tolerance 0.01) with the group defaults' lambda1 and lambda2 (0.001); session-area:
    the group defaults' coarse mask, under their area constraint (2 %) and healthy
    reference, at most 30 epochs; paper-session: the paper's method with its weights
    times 100 (lambda1 0.01, lambda2 1).
    Writes OUT/sub-<P>_ses-<S>_mask.nii.gz and OUT/index.tsv (final loss, epochs,
    P(AD) before and after masking). Rerun the same
    command after an interruption: finished sessions are kept.
    """
    from neuromask.jobs.masks import session_mask_job, unfooled_sessions_message

    config = _mask_config(preset, config_path)
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    result = session_mask_job(
        model_dir,
        caps,
        tsv,
        out,
        config,
        overwrite=overwrite,
        device=device,
        cache_dir=cache_dir,
        progress=not quiet,
    )
    columns = ["participant_id", "session_id", "epochs", "p_ad_before", "p_ad_after"]
    print_table(
        result.index[columns], title=f"Session masks ({result.skipped} kept from an earlier run)"
    )
    message = unfooled_sessions_message(result.index["p_ad_after"])
    if message:
        console.print(f"[yellow]{message}[/yellow]")
