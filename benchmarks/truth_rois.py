"""Which truly atrophied ROIs does a CNN use, and which does each map find? Per truth ROI.

    python benchmarks/truth_rois.py COHORT [COHORT ...] [--maps mask-group,...]
           [--threads 2] [--figure OUT.png]

COHORT is a cohort folder of the localisation suite (``synth/``, ``split/``,
``models/split-0/run-0``, its masks ``mask-LABEL/`` and cached baselines
``baseline_METHOD[_healthy].npy``). On the suite's six scored sessions (its first six
correctly classified validation AD sessions), for each ROI of the truth it prints:

- its size in voxels;
- its share of the CNN's answer: the drop of the mean logit (AD − CN) when that ROI
  alone takes each session's healthy version max(X, H) (image i with CN training
  session i mod K, the suite's pairing), over the drop when every truth ROI does;
- for each map, the ROI's rank among the atlas's ROIs by mean relevance (what
  precision@k reads), and the AUC of its voxels against every brain voxel outside the
  truth (what the voxel AUC averages, ROI by ROI).

For a cohort whose truth is a voxel map (blobs), an ROI's voxels are those of the ROI
that the truth holds. ``--figure`` draws the first cohort's truth and maps side by side,
coronal slices, each scaled to its maximum. Round 28 (docs/mask_levers.md) read the
atlas-ROI cohorts with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from localisation_suite import IMAGES
from sklearn.metrics import roc_auc_score

from neuromask.explain.reference import HealthyReference
from neuromask.io.atlas import load_aal2
from neuromask.io.nifti import load_volume
from neuromask.jobs.trained_model import TrainedModel
from neuromask.metrics.localization import read_ground_truth, roi_means


def relevance(folder: Path, name: str) -> np.ndarray:
    """A map of ``folder``: ``mask-LABEL`` (1 − m) or ``baseline_METHOD[_healthy]``."""
    if name.startswith("mask-"):
        return 1.0 - load_volume(folder / name / "mask.nii.gz")[0]
    return np.abs(np.load(folder / f"{name}.npy"))


LABELS = {
    "mask-group": "group mask (default)",
    "baseline_roi_ablation_healthy": "ROI ablation, healthy reference",
    "baseline_integrated_gradients_healthy": "integrated gradients, healthy reference",
    "baseline_occlusion_healthy": "occlusion, healthy reference",
}


def figure(folder: Path, names: list[str], out: Path) -> None:
    """The truth and each map of ``folder`` in rows of coronal slices (1 − m scale:
    each map divided by its maximum)."""
    from neuromask.figures.masks import plot_mask_rows
    from neuromask.io.nifti import load_volume

    truth, grid = load_volume(folder / "synth" / "ground_truth" / "atrophy_map.nii.gz")
    rows = [("ground truth (atrophy map)", truth)] + [
        (LABELS.get(n, n), relevance(folder, n)) for n in names
    ]
    scaled = [(label, 1.0 - m / max(float(m.max()), 1e-12)) for label, m in rows]
    plot_mask_rows(scaled, grid, out, title=f"{folder.name}: the truth and each map")
    print(f"figure: {out}")


def report(folder: Path, names: list[str]) -> None:
    trained = TrainedModel.open(folder / "models" / "split-0" / "run-0", "cpu")
    val, _ = trained.validation_ad_sessions(progress=False)
    grid = val.data.grid
    atlas = load_aal2(grid)
    truth = read_ground_truth(folder / "synth" / "ground_truth", grid)
    x = val.images[:IMAGES]
    healthy = HealthyReference(trained.training_cn_sessions(), trained.device)
    h = healthy.paired(x, range(len(x)))
    brain = atlas.labels > 0
    inside = atlas.mask(list(truth.rois)) if truth.voxels is None else truth.voxels

    def logit(v: torch.Tensor) -> float:
        with torch.no_grad():
            out = trained.model(v)
        return float((out[:, 1] - out[:, 0]).mean())

    base = logit(x)

    def drop(where: np.ndarray) -> float:
        return base - logit(torch.where(torch.as_tensor(where), h, x))

    total = drop(inside)
    maps = {name: relevance(folder, name) for name in names}
    ranks = {
        name: roi_means(m, atlas).dropna().rank(ascending=False, method="min")
        for name, m in maps.items()
    }
    print(f"\n## {folder.name}: logit {base:.2f}; every truth voxel healthy: drop {total:.2f}\n")
    header = " | ".join(f"{n}: rank, AUC" for n in names)
    print(f"| ROI | voxels | share of the drop | {header} |")
    print("|---" * (3 + len(names)) + "|")
    for roi in truth.rois:
        voxels = atlas.mask([roi]) & inside
        share = drop(voxels) / total
        others = (voxels | ~inside) & brain
        cells = " | ".join(
            f"{int(ranks[n][roi])}, {roc_auc_score(voxels[others], m[others]):.3f}"
            for n, m in maps.items()
        )
        print(f"| {roi} | {int(voxels.sum())} | {share:.1%} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohorts", type=Path, nargs="+")
    parser.add_argument(
        "--maps",
        default="mask-group,baseline_roi_ablation_healthy,baseline_integrated_gradients_healthy",
        help="comma-separated: mask-LABEL folders and baseline_METHOD[_healthy] caches",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.maps.split(",") if n]
    for folder in args.cohorts:
        report(folder, names)
    if args.figure is not None:
        figure(args.cohorts[0], names, args.figure)


if __name__ == "__main__":
    main()
