"""Which mask settings find the truly atrophied regions? Measured on a synthetic cohort.

Usage: python benchmarks/mask_localisation.py OUT [--subjects-per-class 60] [--epochs 30]

1. Synthesises a 3 mm ADNI-like cohort whose atrophied ROIs are drawn at random
   (`random:5`, so nothing is tuned to known regions), quality-checks and splits it.
2. Trains the default CNN on split 0 (or reuses OUT/models).
3. Trains a group mask for each AD score (probability, log-probability, logit) with the
   paper's weights (lambda1 1e-4, lambda2 1e-2, preset `paper`) and with the
   voxel-level weights (lambda1 = lambda2 = 1e-3, preset `voxel`, the defaults when this
   was measured), restricted to the brain, plus the voxel-level logit mask without the
   restriction, all voxel-level with mu = 1, and scores each against the ground truth:
   - top-5 precision: share of the mask's five densest AAL2 ROIs that are atrophied;
   - stem recall: share of the atrophied regions (both hemispheres counted once) found
     among those five;
   - voxel AUC: ROC AUC of 1 - m against the voxels of the ground-truth atrophy map;
   - P(AD): mean probability of the masked validation images.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from neuromask.data.split import SplitConfig, make_splits, write_splits
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.io.atlas import load_aal2, roi_stem
from neuromask.io.nifti import load_volume
from neuromask.io.participants import read_participants
from neuromask.jobs.qc import quality_check_folder
from neuromask.jobs.trained_model import brain_mask_of, load_ad_sessions
from neuromask.metrics import top_rois
from neuromask.train.config import TrainConfig
from neuromask.train.cross_validation import train_splits
from neuromask.train.evaluate import load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects-per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    out = args.out
    synth = out / "synth"
    if not (synth / "participants.tsv").is_file():
        generate_cohort(
            SynthConfig(
                voxel_size=3.0,
                subjects_per_class=args.subjects_per_class,
                atrophy_rois=("random:5",),
                seed=args.seed,
            ),
            synth,
            progress=False,
        )
        quality_check_folder(synth / "caps", synth / "participants.tsv", out / "qc", progress=False)
        split = make_splits(
            read_participants(out / "qc" / "pass.tsv"), SplitConfig(test_subjects_per_class=10)
        )
        write_splits(split, out / "split")
    run = out / "models" / "split-0" / "run-0"
    if not (run / "validation_metrics.json").is_file():
        tic = time.perf_counter()
        train_splits(
            synth / "caps", out / "split", out / "models", TrainConfig(), splits=[0], progress=False
        )
        print(f"trained split 0 in {time.perf_counter() - tic:.0f} s")
    model, record = load_trained_model(run)
    truth_rois = pd.read_csv(synth / "ground_truth" / "atrophy_rois.tsv", sep="\t")[
        "roi_name"
    ].tolist()
    stems = {roi_stem(n) for n in truth_rois}
    atrophy, grid = load_volume(synth / "ground_truth" / "atrophy_map.nii.gz")
    atlas = load_aal2(grid)
    base = dataclasses.replace(mask_preset("voxel"), max_epochs=args.epochs, batch_size=4)
    probe = MeaningfulPerturbation(model, base)
    train = load_ad_sessions(
        model,
        record,
        synth / "caps",
        out / "split" / "split-0" / "train.tsv",
        progress=False,
    )
    val = load_ad_sessions(
        model,
        record,
        synth / "caps",
        out / "split" / "split-0" / "validation.tsv",
        progress=False,
    )
    brain = brain_mask_of(train.data.images)
    print(
        f"atrophied ROIs (drawn at random): {', '.join(sorted(stems))}; "
        f"{len(train.sessions)} training and {len(val.sessions)} validation AD sessions; "
        f"P(AD) before masking {probe.probabilities(val.images, 1).mean():.3f}"
    )
    rows = []
    settings = [
        (preset, score, True)
        for preset in ("paper", "voxel")
        for score in ("probability", "log_probability", "logit")
    ] + [("voxel", "logit", False)]
    for preset, score, restrict in settings:
        weights = mask_preset(preset)
        config = dataclasses.replace(
            base,
            score=score,
            restrict_to_brain=restrict,
            lambda1=weights.lambda1,
            lambda2=weights.lambda2,
        )
        explainer = MeaningfulPerturbation(model, config, brain_mask=brain)
        tic = time.perf_counter()
        masks, result = explainer.attribute(train.images, 1, validation=val.images)
        mask = masks[0, 0].numpy()
        top = top_rois(mask, atlas, 5)
        found = {roi_stem(n) for n in top["roi_name"]}
        rows.append(
            {
                "preset": preset,
                "score": score,
                "restrict_to_brain": restrict,
                "top5_precision": float(top["roi_name"].isin(truth_rois).mean()),
                "stem_recall": len(found & stems) / len(stems),
                "voxel_auc": float(roc_auc_score((atrophy > 0).ravel(), (1 - mask).ravel())),
                "p_ad_masked": float(explainer.probabilities(val.images, 1, masks).mean()),
                "deleted_fraction": float((mask < 1).mean()),
                "epochs": len(result.history),
                "seconds": round(time.perf_counter() - tic),
                "top5": ", ".join(top["roi_name"]),
            }
        )
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "mask_localisation.tsv", sep="\t", index=False)
    print(table.drop(columns="top5").to_string(index=False))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
