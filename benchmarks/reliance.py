"""Does a CNN rely on its synthetic truth? The suite's reliance measure on any folder.

    python benchmarks/reliance.py FOLDER [FOLDER ...] [--threads 1]

FOLDER is a cohort folder of the localisation suite or of ``mask_levers.py`` (``synth/``,
``split/``, ``models/split-0/run-0``: its first six correctly classified validation AD
sessions) or a study folder (``study.toml``: the CNN of split 0, run 0, on the AD sessions
of its session study, ``sessions/sessions.tsv``). Prints, per folder, the mean P(AD) of
those sessions as they are, with their truly atrophied voxels taken from a CN training
session, and with every other voxel taken from it (``localisation_suite.reliance``).
A CNN *relies on its truth* when the second is at most half the first (round 17's
definition, docs/mask_levers.md): only then can a map be scored against the truth, and
only then can a mask that restores healthy tissue on a few percent of the brain fool it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from localisation_suite import IMAGES, reliance

from neuromask.io.atlas import load_aal2
from neuromask.jobs.trained_model import TrainedModel
from neuromask.metrics.localization import read_ground_truth


def measure(folder: Path) -> dict[str, float]:
    """The three P(AD) of ``folder`` (a cohort or a study, see the module's docstring)."""
    trained = TrainedModel.open(folder / "models" / "split-0" / "run-0", "cpu")
    if (folder / "study.toml").is_file():
        data = folder / "data" / "adni"
        caps, train = data / "synth" / "caps", data / "split" / "split-0" / "train.tsv"
        sessions = trained.ad_sessions(caps, folder / "sessions" / "sessions.tsv", progress=False)
        images, grid, truth_dir = (
            sessions.images,
            sessions.data.grid,
            data / "synth" / "ground_truth",
        )
    else:
        caps, train = folder / "synth" / "caps", folder / "split" / "split-0" / "train.tsv"
        sessions, _ = trained.validation_ad_sessions(progress=False)
        images, grid = sessions.images[:IMAGES], sessions.data.grid
        truth_dir = folder / "synth" / "ground_truth"
    truth = read_ground_truth(truth_dir, grid)
    p = reliance(trained, folder, images, truth, load_aal2(grid), caps=caps, train=train)
    return {"sessions": len(images), "truth_rois": len(truth.rois), **p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for folder in args.folders:
        p = measure(folder)
        relies = p["truth from a CN session"] <= 0.5 * p["as is"]
        print(folder.name, json.dumps(p), "relies on its truth" if relies else "does not rely")


if __name__ == "__main__":
    main()
