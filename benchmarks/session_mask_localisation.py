"""Do session masks localise? The ``session`` preset (voxel-level, mu = 1) against
``session-area``, the group defaults' coarse stage run on each session alone (2 % of the
brain restored to healthy tissue, a lattice twice as coarse; no fine stage, halo or
trace, which session masks do not have), on the first N correctly classified validation AD sessions of each
cohort (a folder that `localisation_suite.py` or `mask_levers.py` prepared).

Usage: python benchmarks/session_mask_localisation.py OUT.tsv COHORT... [--images 6]
[--threads 2] [--session-epochs 150] [--area-epochs 30]

Per setting and cohort it prints the mean over sessions of voxel AUC, ROI precision at
k, relevance mass and coherence, the mean masked P(AD) (each mask's own fill), the mean
ROI similarity between the sessions' masks and the wall time of all of them, side by
side in one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.io.atlas import load_aal2
from neuromask.jobs.trained_model import TrainedModel, brain_mask_of
from neuromask.metrics.coherence import coherence
from neuromask.metrics.localization import read_ground_truth
from neuromask.metrics.similarity import cosine_matrix, roi_vectors


def settings(session_epochs: int, area_epochs: int) -> dict[str, MaskConfig]:
    """The two session masks compared: the ``session`` preset at a CPU budget of epochs,
    without early stopping, and ``session-area`` (the group defaults' coarse stage)."""
    preset = mask_preset("session")
    return {
        f"session preset ({session_epochs} epochs)": dataclasses.replace(
            preset, max_epochs=session_epochs, patience=session_epochs
        ),
        f"area 2 %, coarse ({area_epochs} epochs)": mask_preset(
            "session-area", max_epochs=area_epochs
        ),
    }


def run_cohort(cohort: Path, images: int, configs: dict[str, MaskConfig]) -> list[dict]:
    trained = TrainedModel.open(cohort / "models" / "split-0" / "run-0", "cpu")
    caps = cohort / "synth" / "caps"
    val = trained.ad_sessions(caps, cohort / "split" / "split-0" / "validation.tsv", progress=False)
    grid = val.data.grid
    atlas = load_aal2(grid)
    truth = read_ground_truth(cohort / "synth" / "ground_truth", grid)
    brain = brain_mask_of(val.data.images)
    healthy = trained.training_cn_sessions()
    x = val.images[:images]
    rows = []
    for name, config in configs.items():
        reference = healthy if config.reference == "healthy" else None
        explainer = MeaningfulPerturbation(
            trained.model, config, brain_mask=brain, reference=reference
        )
        tic = time.perf_counter()
        masks, result = explainer.attribute(x, 1, mode="session")
        seconds = time.perf_counter() - tic
        scores = []
        for m in masks[:, 0].numpy():
            s = truth.scores(1 - m, atlas, k=len(truth.rois), kind="attribution")
            c = coherence(1 - m, brain)
            scores.append([s.voxel_auc, s.roi_precision_at_k, s.mass_accuracy, c.coherence])
        similarity = cosine_matrix(roi_vectors(masks[:, 0].numpy(), atlas))
        mean = np.mean(scores, axis=0)
        rows.append({
            "cohort": cohort.name, "setting": name, "voxel_auc": mean[0],
            "precision_at_k": mean[1], "mass_accuracy": mean[2], "coherence": mean[3],
            "p_ad_masked": float(np.mean(explainer.probabilities(x, 1, masks))),
            "roi_similarity_between_sessions": float(
                similarity[~np.eye(len(similarity), dtype=bool)].mean()
            ),
            "epochs": float(result.history["epochs"].mean()), "seconds": seconds,
        })  # fmt: skip
        print(pd.DataFrame([rows[-1]]).round(3).to_string(index=False), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("cohorts", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--session-epochs", type=int, default=150)
    parser.add_argument("--area-epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = settings(args.session_epochs, args.area_epochs)
    rows = [row for c in args.cohorts for row in run_cohort(c, args.images, configs)]
    table = pd.DataFrame(rows)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
