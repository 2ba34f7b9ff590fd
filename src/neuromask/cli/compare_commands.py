"""``neuromask compare``: ROI similarity, prob_CNN and top ROIs of a set of masks."""

from __future__ import annotations

import math
from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import (
    cache_dir_option,
    device_option,
    maps_options,
    quiet_option,
    top_option,
)


@click.command()
@click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for roi_similarity.tsv, top_rois.tsv, prob_cnn.tsv and summary.json.",
)
@click.option(
    "--models",
    "model_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="The trained model (run folder) of each mask, in the same order; repeat the "
    "option once per mask. Adds prob_CNN.",
)
@click.option(
    "--atlas",
    "atlas_nifti",
    type=click.Path(path_type=Path),
    default=None,
    help="A labelled NIfTI atlas to use instead of AAL2 (with --atlas-tsv).",
)
@click.option(
    "--atlas-tsv",
    type=click.Path(path_type=Path),
    default=None,
    help="The atlas's ROI table: columns roi_value and roi_name.",
)
@top_option(help="ROIs listed per mask.")
@click.option("--mu", type=float, default=1.0, help="Fill value of deleted voxels (prob_CNN).")
@device_option(help="Where to run CNNs.")
@cache_dir_option(help="Keep the loaded images in this folder (.npy) for the next run.")
@quiet_option(help="No progress bars.")
@maps_options("model_dirs")
def compare(
    masks: tuple[Path, ...],
    out: Path,
    model_dirs: tuple[Path, ...],
    atlas_nifti: Path | None,
    atlas_tsv: Path | None,
    k: int,
    mu: float,
    device: str,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Compare masks: ROI-based cosine similarity (AAL2 densities, mean of 1 - m per
    ROI), the k densest ROIs of each mask, and with --models the prob_CNN metric (mean
    P(AD) that model A gives to its validation AD images masked with mask B, averaged
    over both directions; near 0: the masks are similar).

    Example: neuromask compare a/mask.nii.gz b/mask.nii.gz --models m/split-0/run-0
    --models m/split-1/run-0 --out cmp
    """
    from neuromask.jobs.compare import compare_files

    if model_dirs and len(model_dirs) != len(masks):
        raise click.UsageError(
            f"--models needs one model folder per mask: got {len(model_dirs)} for "
            f"{len(masks)} masks"
        )
    result = compare_files(
        [str(m) for m in masks],
        out,
        model_dirs=[str(d) for d in model_dirs] or None,
        atlas_nifti=str(atlas_nifti) if atlas_nifti else None,
        atlas_tsv=str(atlas_tsv) if atlas_tsv else None,
        k=k,
        mu=mu,
        device=device,
        cache_dir=str(cache_dir) if cache_dir else None,
        progress=not quiet,
    )
    import pandas as pd

    names = [f"[{i}]" for i in range(len(result.labels))]
    for i, label in enumerate(result.labels):
        console.print(f"{names[i]} {label}")
    print_table(
        pd.DataFrame(result.roi_similarity, columns=names).assign(mask=names)[["mask", *names]],
        title="ROI similarity (cosine)",
    )
    if result.prob_cnn is not None:
        print_table(
            pd.DataFrame(result.prob_cnn, columns=names).assign(mask=names)[["mask", *names]],
            title="prob_CNN (mean of both directions)",
        )
    tops = result.top_rois.copy()
    tops["mask"] = tops["mask"].map(dict(zip(result.labels, names, strict=True)))
    print_table(tops, title=f"Top {k} ROIs")
    mean_sim = result.mean_roi_similarity()
    if not math.isnan(mean_sim):
        line = f"Mean over pairs: ROI similarity {mean_sim:.3f}"
        if result.prob_cnn is not None:
            line += f", prob_CNN {result.mean_prob_cnn():.3f}"
        console.print(line)
    console.print(f"Tables written to {out}")
