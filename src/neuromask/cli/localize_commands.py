"""``neuromask localize``: score a mask or an attribution map against synthetic ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import maps_options, top_option

if TYPE_CHECKING:
    import numpy as np


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
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A trained model folder (split-K/run-R, or a ClinicaDL MAPS): also measure the map's deletion, "
    "insertion and ROAD curves on this CNN, with mu = 1 and with healthy tissue as the "
    "reference (healthy_road_auc: ROAD on the residual from a CN session).",
)
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="With --model: how many correctly classified validation AD sessions.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the scores as JSON.",
)
@maps_options()
def localize(
    map_path: Path,
    truth: Path,
    k: int,
    attribution: bool,
    model_dir: Path | None,
    images: int,
    out: Path | None,
) -> None:
    """Score MAP_OR_MASK against a synthetic cohort's atrophied regions: ROI precision
    and recall at k, voxel-level ROC AUC, relevance mass accuracy and coherence; with
    --model, also its faithfulness to that CNN (deletion, insertion and ROAD areas, on
    the first validation AD sessions it classifies correctly).

    Example: neuromask localize group/mask.nii.gz --truth synth/ground_truth
    --model models/split-0/run-0
    """
    import pandas as pd

    from neuromask.io.atlas import default_atlas
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
    atlas = default_atlas(grid)
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
    faithful = (
        {} if model_dir is None else _faithfulness(model_dir, relevance_of(values, kind), images)
    )
    if out is not None:
        record = {"map": str(map_path), **scores.to_dict(), "coherence": coherent.coherence}
        record.update(components=coherent.components, **faithful)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
        console.print(f"Scores written to {out}")


def _faithfulness(model_dir: Path, relevance: np.ndarray, images: int) -> dict[str, object]:
    """Print and return the map's faithfulness areas on the CNN of ``model_dir``."""
    import pandas as pd

    from neuromask.jobs.faithfulness import map_faithfulness

    measured = map_faithfulness(model_dir, relevance, images=images)
    print_table(
        pd.DataFrame([{"curve": key, "area": v} for key, v in measured.areas.items()]),
        title=f"Faithfulness to {model_dir} ({len(measured.sessions)} AD sessions; "
        "insertion: higher is better, deletion and ROAD: lower)",
    )
    return {**measured.areas, "faithfulness_sessions": measured.sessions}
