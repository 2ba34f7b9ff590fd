"""Does another order of a mask's kept voxels localise better, and at what cost?

    python benchmarks/kept_order.py OUT.tsv COHORT [COHORT ...] [--masks 'lever_B*.npy']
           [--lengths 2,4,8] [--depths 0.005,0.02] [--threads 1]

COHORT is a tuning cohort folder of ``benchmarks/mask_levers.py`` (``synth/``,
``split/``, ``models/split-0/run-0``) holding the masks that script saved
(``lever_NAME.npy``; ``--masks`` picks them). Each mask's deleted voxels (m < 0.5) stay
as they are. Its kept voxels, which the halo and the gradient trace rank today, are
re-ranked by a tail: m' = m (1 − depth · exp(−d / length)) inside the brain, d the
Euclidean distance in voxels to the nearest deleted voxel. Every pair of ``--lengths``
and ``--depths`` is scored with ``mask_levers.score_map`` on the cohort's first six
validation AD sessions, beside the mask as it is (``map``): voxel AUC, precision@k,
mass, coherence, and the insertion and ROAD curves with each session's healthy version.

It prints the mean over cohorts (of each cohort's mean over its masks) and, against the
mask as it is, the worst cohort's change in voxel AUC, insertion from the healthy
version and ROAD on a healthy anatomy. Round 29 (docs/mask_levers.md) asked it of the
default masks of t151–t158.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mask_levers import open_cohort, score_map
from scipy import ndimage

SCORES = (
    "voxel_auc",
    "precision_at_k",
    "mass_accuracy",
    "coherence",
    "insertion_healthy_auc",
    "road_healthy_auc",
)


def with_tail(m: np.ndarray, brain: np.ndarray, length: float, depth: float) -> np.ndarray:
    """``m`` with its kept voxels (m ≥ 0.5) in ``brain`` lowered by up to ``depth``, the
    more the nearer they lie to a deleted voxel; the deleted voxels unchanged. A mask
    that deletes nothing is returned as it is."""
    deleted = m < 0.5
    if not deleted.any():
        return m
    distance = ndimage.distance_transform_edt(~deleted)
    factor = np.where(deleted | ~brain, 1.0, 1.0 - depth * np.exp(-distance / length))
    return m * factor


def cohort_rows(cohort: Path, pattern: str, tails: list[tuple[float, float]]) -> list[dict]:
    trained, _, val, atlas, truth, brain, healthy = open_cohort(cohort)
    rows = []
    for path in sorted(cohort.glob(pattern)):
        m = np.load(path).squeeze().astype(np.float64)
        variants = [("map", m)]
        variants += [(f"tail {lg:g} x {dp:g}", with_tail(m, brain, lg, dp)) for lg, dp in tails]
        for name, values in variants:
            relevance = (1.0 - values).astype(np.float32)
            scores = score_map(
                relevance, trained.model, val.images[:6], brain, atlas, truth, healthy
            )
            rows.append({"cohort": cohort.name, "mask": path.stem, "ranking": name, **scores})
            print(cohort.name, path.stem, name, round(scores["voxel_auc"], 4), flush=True)
    return rows


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Means over cohorts, and each order's worst cohort against the mask as it is."""
    means = table.groupby(["ranking", "cohort"])[list(SCORES)].mean()
    base = means.loc["map"]
    out = []
    for ranking in means.index.get_level_values(0).unique():
        change = means.loc[ranking] - base
        out.append(
            {
                "ranking": ranking,
                **means.loc[ranking].mean().to_dict(),
                "auc, worst change": change.voxel_auc.min(),
                "insertion healthy, worst change": change.insertion_healthy_auc.min(),
                "ROAD healthy, worst change": change.road_healthy_auc.max(),
            }
        )
    return pd.DataFrame(out).set_index("ranking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("cohorts", type=Path, nargs="+")
    parser.add_argument("--masks", default="lever_B*.npy")
    parser.add_argument("--lengths", default="2,4,8")
    parser.add_argument("--depths", default="0.005,0.02")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [float(v) for v in args.lengths.split(",")]
    depths = [float(v) for v in args.depths.split(",")]
    tails = [(lg, dp) for lg in lengths for dp in depths]
    rows = []
    for cohort in args.cohorts:
        rows += cohort_rows(cohort, args.masks, tails)
        pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    print(summary(pd.DataFrame(rows)).round(4).to_string())


if __name__ == "__main__":
    main()
