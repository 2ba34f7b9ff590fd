"""``neuromask localize``: score a mask or an attribution map against synthetic ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import top_option


@click.command()
@click.argument("map_path", metavar="MAP_OR_MASK", type=click.Path(path_type=Path))
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    required=True,
    help="The cohort's ground_truth folder (written by neuromask synth).",
)
@top_option(help="ROIs compared with the truth.")
@click.option(
    "--attribution",
    is_flag=True,
    help="MAP is an attribution map (relevance |a|), not a mask (relevance 1 - m).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the scores as JSON.",
)
def localize(map_path: Path, truth: Path, k: int, attribution: bool, out: Path | None) -> None:
    """Score MAP_OR_MASK against a synthetic cohort's atrophied regions: ROI precision
    and recall at k, voxel-level ROC AUC and relevance mass accuracy.

    Example: neuromask localize group/mask.nii.gz --truth synth/ground_truth
    """
    import pandas as pd

    from neuromask.io.atlas import load_aal2
    from neuromask.io.atomic import atomic_path
    from neuromask.io.claim import check_not_an_input
    from neuromask.io.nifti import load_volume
    from neuromask.metrics.coherence import coherence
    from neuromask.metrics.localization import (
        localization_scores,
        read_truth_rois,
        read_truth_voxels,
        relevance_of,
    )

    if out is not None:  # never written over the map or into the ground truth
        check_not_an_input(out, [map_path, truth], removing=True)
    truth_rois = read_truth_rois(truth)
    truth_map = truth / "atrophy_map.nii.gz"
    values, grid = load_volume(map_path)
    if truth_map.is_file():
        load_volume(truth_map, grid, reference=str(map_path))  # same grid, affine included
    atlas = load_aal2(grid)
    kind = "attribution" if attribution else "mask"
    coherent = coherence(relevance_of(values, kind), atlas.labels > 0)
    scores = localization_scores(
        values,
        atlas,
        truth_rois,
        k=k,
        kind=kind,
        truth_voxels=read_truth_voxels(truth, grid),
    )
    print_table(
        pd.DataFrame(
            [
                {"score": f"ROI precision at {k}", "value": scores.roi_precision_at_k},
                {"score": f"ROI recall at {k}", "value": scores.roi_recall_at_k},
                {"score": "voxel ROC AUC", "value": scores.voxel_auc},
                {"score": "mass accuracy", "value": scores.mass_accuracy},
                {"score": "coherence (top 5 % in 5 regions)", "value": coherent.coherence},
            ]
        ),
        title=f"Localisation of {map_path}",
    )
    console.print(f"Top {k} ROIs: {', '.join(scores.top_rois)}")
    console.print(f"Atrophied ROIs: {', '.join(scores.truth_rois)}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "map": str(map_path),
                        **scores.to_dict(),
                        "coherence": coherent.coherence,
                        "components": coherent.components,
                    },
                    indent=2,
                )
            )
        console.print(f"Scores written to {out}")
