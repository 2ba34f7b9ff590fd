"""Baseline attribution methods on the CNN of `mask_localisation.py OUT`: localisation
against the ground truth, wall time and peak memory, measured side by side in one run.

Usage: python benchmarks/baseline_localisation.py OUT [--images 4] [--window 4]

Each method attributes the first N correctly classified validation AD sessions of
split 0; the mean |map| is scored by `neuromask localize`'s functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from neuromask.explain.baselines import METHODS, attribute, measure
from neuromask.io.atlas import load_aal2
from neuromask.io.nifti import read_grid
from neuromask.jobs.trained_model import load_ad_sessions
from neuromask.metrics.localization import localization_scores, read_truth_rois
from neuromask.train.evaluate import load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args()
    synth = args.out / "synth"
    model, record = load_trained_model(args.out / "models" / "split-0" / "run-0")
    val = load_ad_sessions(
        model,
        record,
        synth / "caps",
        args.out / "split" / "split-0" / "validation.tsv",
        progress=False,
    )
    atlas = load_aal2(read_grid(synth / "ground_truth" / "atrophy_map.nii.gz"))
    truth = read_truth_rois(synth / "ground_truth")
    x = val.images[: args.images]
    rows = []
    for method in METHODS:
        maps, cost = measure(
            lambda: attribute(method, model, x, atlas_labels=atlas.labels, window=args.window)
        )
        s = localization_scores(maps.abs().mean(0)[0].numpy(), atlas, truth, kind="attribution")
        rows.append(
            {
                "method": method,
                "roi_precision_at_5": s.roi_precision_at_k,
                "roi_recall_at_5": s.roi_recall_at_k,
                "voxel_auc": round(s.voxel_auc, 3),
                "mass_accuracy": round(s.mass_accuracy, 3),
                "seconds": round(cost.seconds, 1),
                "peak_memory_mb": round(cost.peak_memory_mb),
                "top5": ", ".join(s.top_rois),
            }
        )
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "baseline_localisation.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
