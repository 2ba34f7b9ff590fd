"""Does ROAD's imputation itself look like atrophy on gray-matter maps?

Usage: python benchmarks/road_imputation.py SUITE_OUT [--cohorts rois,weak,blobs]

On cohorts that `benchmarks/localisation_suite.py` has made and trained (SUITE_OUT), the
ROAD curve (`neuromask.metrics.faithfulness`, noise SD 0.01) of two relevance maps: the
ground truth (the synthetic atrophy map) and random voxels, on six CN sessions of the
CNN's training set and on the six AD validation sessions the suite scores. Each curve is
the mean P(AD) once the top q % of the brain is imputed from its neighbours:

- `plain`: ROAD's noisy linear imputation of the image's values;
- `cn mean`: of the residual from the mean of the CN training sessions, added back;
- `healthy anatomy`: of the residual from one CN session per image (other CN sessions
  than the six scored ones for the CN rows), added back; what `neuromask localize` and
  `neuromask sanity` report as `healthy_road_auc`.

A removal whose shape carries no signal leaves CN sessions CN and, for random voxels, AD
sessions AD; removing the truth should bring AD sessions down. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

FRACTIONS = (0.0, 0.05, 0.1, 0.2)
IMAGES = 6


def curves(folder: Path) -> list[dict]:
    from neuromask.io.nifti import load_volume
    from neuromask.jobs.trained_model import TrainedModel, brain_mask_of
    from neuromask.metrics.faithfulness import faithfulness_curves

    trained = TrainedModel.open(folder / "models" / "split-0" / "run-0", "cpu")
    val, _ = trained.validation_ad_sessions(progress=False)
    brain = brain_mask_of(val.data.images)
    truth = load_volume(folder / "synth" / "ground_truth" / "atrophy_map.nii.gz", val.data.grid)[0]
    noise = np.random.default_rng(1).random(truth.shape)
    cn = torch.from_numpy(trained.training_cn_sessions()[:, None])
    if len(cn) < 2 * IMAGES:
        raise SystemExit(f"{folder}: fewer than {2 * IMAGES} CN training sessions")
    groups = {
        "CN": (cn[:IMAGES], cn[IMAGES : 2 * IMAGES]),
        "AD": (val.images[:IMAGES], cn[:IMAGES]),
    }
    mean = cn.mean(0, keepdim=True)
    rows = []
    for group, (images, paired) in groups.items():
        anatomies = {"plain": None, "cn mean": mean.expand_as(images), "healthy anatomy": paired}
        for name, anatomy in anatomies.items():
            for label, relevance in (("truth", truth), ("random", noise)):
                road = faithfulness_curves(
                    trained.model, images, relevance, brain, fractions=FRACTIONS,
                    road_anatomy=anatomy,
                ).road  # fmt: skip
                rows.append(
                    {"cohort": folder.name, "sessions": group, "imputation": name,
                     "map": label, **{f"{q:.0%}": p for q, p in zip(FRACTIONS, road, strict=True)}}
                )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--cohorts", default="rois,weak,blobs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for name in args.cohorts.split(",") if name for r in curves(args.suite / name)]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|---" * len(keys) + "|")
    for r in rows:
        print(
            "| "
            + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
            + " |"
        )


if __name__ == "__main__":
    main()
