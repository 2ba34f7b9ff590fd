"""``neuromask sanity``: neuromask's masks against the usual attribution methods, with
the model-randomisation checks and (on synthetic cohorts) localisation."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import (
    cache_dir_option,
    device_option,
    maps_options,
    overwrite_option,
    quiet_option,
    top_option,
)
from neuromask.jobs.sanity_maps import BASELINE_REFERENCES, SanityConfig

#: The library's defaults, shown and used by the command.
_SANITY = SanityConfig()
#: The printed table's column names.
_SHORT = {
    "roi_precision_at_k": "prec@k",
    "roi_recall_at_k": "rec@k",
    "voxel_auc": "AUC",
    "mass_accuracy": "mass",
    "inter_subject_similarity": "inter",
    "similarity_randomised": "random",
    "similarity_shuffled": "shuffled",
    "passes_randomisation": "passes",
    "seconds": "s",
    "peak_memory_mb": "MB",
}


def _shuffled_test(model_dir: Path, shuffled: bool) -> bool:
    """--shuffled, left out by default for a ClinicaDL model (which neuromask cannot
    retrain); asked for explicitly, the job refuses it."""
    from neuromask.train.model_folder import is_maps_model

    source = click.get_current_context().get_parameter_source("shuffled")
    if shuffled and is_maps_model(model_dir) and source == click.core.ParameterSource.DEFAULT:
        console.print(
            "A ClinicaDL model: the shuffled-label test (which retrains the CNN with "
            "neuromask's trainer) is left out; the layer randomisation test remains."
        )
        return False
    return shuffled


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="A synthetic cohort's ground_truth folder: adds the localisation scores.",
)
@click.option(
    "--methods",
    default=",".join(_SANITY.methods),
    help="Comma-separated methods: mask (neuromask's), saliency, grad_cam, "
    "integrated_gradients, occlusion, roi_ablation.",
)
@click.option(
    "--images", type=int, default=_SANITY.images, help="Validation AD sessions explained."
)
@top_option(help="ROIs compared with the truth.")
@click.option(
    "--mask-epochs",
    type=int,
    default=_SANITY.mask_epochs,
    help="Coarse epochs of each group mask at its first area (max_epochs); its fine stage "
    "and any larger areas keep the group preset's epochs.",
)
@click.option(
    "--mask-config",
    "mask_config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML of group-mask settings (the keys of `mask group --config`) on top of the "
    'group preset and --mask-epochs; `preset = "NAME"` starts from another preset. '
    "Checks any mask setting, e.g. a candidate for the defaults.",
)
@click.option(
    "--session-epochs",
    type=int,
    default=_SANITY.session_epochs,
    help="Epochs of the session masks.",
)
@click.option(
    "--window", type=int, default=_SANITY.window, help="Occlusion cube side and stride (voxels)."
)
@click.option("--ig-steps", type=int, default=_SANITY.ig_steps, help="Integrated-gradients steps.")
@click.option(
    "--baseline-reference",
    type=click.Choice(BASELINE_REFERENCES),
    default=_SANITY.baseline_reference,
    show_default=True,
    help="What occlusion and ROI ablation put where they remove, and where integrated "
    "gradients start: mu (1, the paper's fill) or healthy (each image's healthy version "
    "max(X, H) from the CNN's CN training sessions, the default masks' fill).",
)
@click.option(
    "--shuffled/--no-shuffled",
    default=_SANITY.shuffled,
    help="Also train a CNN on shuffled labels (the data-randomisation test).",
)
@click.option(
    "--shuffled-epochs",
    type=int,
    default=_SANITY.shuffled_epochs,
    help="Epochs of the shuffled-label CNN (0: the model's max_epochs).",
)
@click.option(
    "--seed", type=int, default=_SANITY.seed, help="Label permutation and re-initialisation."
)
@device_option(help="Where to run.")
@cache_dir_option(help="Keep the loaded images in this folder (.npy) for the next run.")
@overwrite_option(help="Replace OUT if it holds other results.")
@quiet_option(help="No progress output.")
@maps_options()
def sanity(
    model_dir: Path,
    out: Path,
    truth: Path | None,
    methods: str,
    images: int,
    k: int,
    mask_epochs: int,
    mask_config: Path | None,
    session_epochs: int,
    window: int,
    ig_steps: int,
    baseline_reference: str,
    shuffled: bool,
    shuffled_epochs: int,
    seed: int,
    device: str,
    cache_dir: Path | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Trust the explanation: explain MODEL_DIR's correctly classified validation AD
    sessions with neuromask's group mask and with the usual attribution methods, and
    repeat every explanation on copies of the CNN re-initialised layer by layer from the
    top (Adebayo et al. 2018) and on a CNN trained on shuffled labels.

    A method passes when the maps of the fully randomised and the shuffled-label CNNs
    are less similar (AAL2 ROI cosine) to the trained CNN's map than two subjects' maps
    are to each other. With --truth, the maps are also scored against the synthetic
    ground truth. OUT gets explainers.tsv (one row per method), cascade.tsv, sanity.png,
    maps.png and settings.json; a rerun resumes.

    Example: neuromask sanity models/split-0/run-0 sanity --truth synth/ground_truth
    """
    from neuromask.config import read_toml
    from neuromask.jobs.sanity import SanityConfig, run_sanity

    config = SanityConfig(
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        images=images,
        k=k,
        mask_epochs=mask_epochs,
        session_epochs=session_epochs,
        window=window,
        ig_steps=ig_steps,
        shuffled=_shuffled_test(model_dir, shuffled),
        shuffled_epochs=shuffled_epochs,
        seed=seed,
        mask_settings=read_toml(mask_config) if mask_config is not None else {},
        baseline_reference=baseline_reference,
    )
    if mask_config is not None:
        config.group_mask_config(source=str(mask_config))  # errors name the file
    result = run_sanity(
        model_dir,
        out,
        truth=truth,
        config=config,
        device=device,
        cache_dir=cache_dir,
        overwrite=overwrite,
        progress=not quiet,
    )
    short = {**_SHORT, "roi_precision_at_k": f"prec@{k}", "roi_recall_at_k": f"rec@{k}"}
    shown = result.table[[c for c in ["method", *short] if c in result.table.columns]]
    print_table(shown.rename(columns=short), title=f"Explanations of {model_dir}")
    console.print(
        "inter: ROI similarity between subjects' maps; random / shuffled: ROI similarity to "
        "the fully re-initialised / shuffled-label CNN's map (a method passes below inter)."
    )
    if config.fills_differ:
        console.print(
            "The group mask restores healthy tissue where it deletes; these baselines put "
            "mu = 1 there. --baseline-reference healthy compares them under the same fill."
        )
    console.print(f"Tables and figures in [bold]{out}[/bold]")
