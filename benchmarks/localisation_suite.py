"""Does the default group mask show what the CNN uses? Every method on fresh cohorts.

Usage: python benchmarks/localisation_suite.py OUT [--cohorts NAME,NAME] [--jobs 2]
           [--masks group,group-r23,group-r13,group-r12,group-r9,group-wide,group-coarse,
                    group-mu,group-sufficient,voxel,group-fast,group-s1,group-r23-s1,
                    group-r25,group-r25-s1]
           [--rescore]

Each cohort is made, quality-checked, split and trained through the `neuromask`
command, as a user would (`synth`, `qc`, `split`, `train --split 0`; 120 subjects per
class); its group masks too (`neuromask mask group ...`: the defaults, since round 24 F12:
oneDNN's convolution (since round 27 its input gradients too), 12 epochs of the coarse
mask and 6 of the fine stage, both again
at 3, 4 and 6 % (6 + 6 epochs) until the mask fools the CNN; `group-r23`, round 23's
defaults, 20 + 10 epochs and 10 + 10 at the larger areas, PyTorch's kernels;
`group-r13`, that at 2 % only, round 13's default; `group-r12`, that without the
gradient trace, `trace_depth = 0`, round 12's default; `group-r9`, without the trace or
the halo, `halo_sigma = 0`, round 9's default; `--preset group-wide`, round 8's default;
`--preset group-coarse`, the coarse mask alone, the defaults before the fine stage;
`--preset group-mu`, the coarse mask with mu = 1 at 5 %, the defaults before the
healthy reference; `--preset group-sufficient`, the coarse mask grown to 4 and 8 %
until it fools the CNN; these three at most 40 epochs per area; `--preset voxel`, the
voxel-level mask, capped at 40 epochs; `--preset group-fast`, round 23's defaults in
bfloat16 with F12's epochs; `group-s1` and `group-r23-s1`, the defaults and round 23's
at mask seed 1; `group-r25` and `group-r25-s1`, rounds 24-26's defaults, `convolution =
"onednn"`, at mask seeds 0 and 1), on the sessions of the
first 24 AD subjects of split 0's training set. The baselines (occlusion with cubes of
24 mm, integrated gradients with 16 steps, AAL2 ROI ablation) run through the library on
the first six correctly classified validation AD sessions, which also score every map;
each runs twice, with mu = 1 and with each session's healthy version as its reference
("(healthy reference)", since round 28: the default masks' own fill):

- localisation against the ground truth (`neuromask localize`'s scores; k = the number
  of truly atrophied ROIs; voxel truth for the blob cohorts);
- coherence (`neuromask.metrics.coherence`: share of the top 5 % of brain voxels in
  the 5 largest connected components), and the same of the top 2 % (the default
  mask's area: its deleted voxels, without the kept ones that its halo ranks next);
- deletion, insertion and ROAD areas (`neuromask.metrics.faithfulness`), with mu = 1
  and also with each session's healthy version max(X, H) as the reference (ROAD then
  imputes the residual from H and adds H back: "ROAD on a healthy anatomy");
- P(AD) of the masked validation sessions (masks only): with the mask's own fill, with
  mu = 1 and with healthy tissue (`neuromask.explain.reference`), and wall time.

The ground truth itself (the synthetic atrophy map) is scored as a map too: the row
"ground truth" says what a perfect localiser gets on each score.

It also measures whether each CNN relies on the truth (`reliance`: P(AD) with the truth,
or everything else, taken from a CN session), since only then can a map be scored
against it. The cohorts use seeds 201 to 206. Seeds 101 to 138 were used to choose the
defaults (`benchmarks/mask_levers.py`) and are not used here. Every step resumes: rerun
the same command after an interruption. A finished mask whose settings are no longer
those its label runs (the defaults moved since it was made) stops the suite, naming the
folder to remove, rather than enter the table under today's name. Prints one table per
cohort, the reliance table and the mean ± SD over the cohorts, as Markdown, and writes
OUT/suite.tsv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

#: 120 subjects per class: with 40, the CNNs separated the classes without relying on
#: the atrophied regions (the CN mean put in their place left P(AD) at 0.56 on a tuning
#: cohort), so no map could be scored against the truth. `reliance` measures it per cohort.
COMMON = ["--subjects-per-class", "120", "--sessions", "1", "2"]
#: The group masks learn from the sessions of this many AD subjects of the training set.
MASK_SUBJECTS = 24
COHORTS: dict[str, list[str]] = {
    "rois": ["--seed", "201", "--atrophy-rois", "random:4"],
    "blobs": ["--seed", "202", "--atrophy-blobs", "4"],
    "weak": ["--seed", "203", "--atrophy-rois", "random:4", "--atrophy-strength", "0.2"],
    "heterogeneous": [
        "--seed",
        "204",
        "--atrophy-rois",
        "random:4",
        "--atrophy-heterogeneity",
        "0.5",
    ],
    "wide-blobs": ["--seed", "206", "--atrophy-blobs", "3", "--blob-radius-mm", "15"],
    "fine": [
        "--seed",
        "205",
        "--atrophy-rois",
        "random:4",
        "--voxel-size",
        "1.5",
        "--sessions",
        "1",
        "1",
    ],
}
#: Training settings per cohort (the defaults elsewhere). At 1.5 mm the CNN's validation
#: loss stayed at 0.69 for its first four epochs, one short of the default patience of
#: five (at 3 mm it fell from the third on), so this cohort trains for 40 epochs without
#: early stopping: a slower start must not end it.
TRAIN_SETTINGS: dict[str, dict[str, object]] = {"fine": {"max_epochs": 40, "patience": 40}}
#: The masks compared: label -> (`neuromask mask group --preset`, settings on top of it).
MASKS: dict[str, tuple[str, dict[str, object]]] = {
    "group": ("group", {}),
    "group-r23": ("group-r23", {}),
    "group-r13": ("group-r23", {"larger_areas": []}),
    "group-r12": ("group-r23", {"trace_depth": 0.0, "larger_areas": []}),
    "group-r9": ("group-r23", {"halo_sigma": 0.0, "trace_depth": 0.0, "larger_areas": []}),
    "group-wide": ("group-wide", {}),
    "group-coarse": ("group-coarse", {}),
    "group-mu": ("group-mu", {}),
    "group-sufficient": ("group-sufficient", {}),
    "voxel": ("voxel", {"max_epochs": 40}),
    "group-fast": ("group-fast", {}),
    # the same two at a second mask seed: round 22 judged F12 on two seeds' means, since
    # one seed's mask may differ by an ROI from another's on the same CNN (round 24)
    "group-s1": ("group", {"seed": 1}),
    "group-r23-s1": ("group-r23", {"seed": 1}),
    # rounds 24-26's defaults: F12 with PyTorch's backward pass to the input (round 27
    # moved the convolutions' input gradients to oneDNN)
    "group-r25": ("group", {"convolution": "onednn"}),
    "group-r25-s1": ("group", {"convolution": "onednn", "seed": 1}),
}
LABELS = {
    "group": "mask (group, default: F12, oneDNN and its input gradients, 12 + 6 epochs; round 27)",
    "group-r23": "mask (group-r23: round 23's defaults, 20 + 10 epochs)",
    "group-r13": "mask (group at 2 % only: round 13's default)",
    "group-r12": "mask (group without the gradient trace: round 12's default)",
    "group-r9": "mask (group without the halo: round 9's default)",
    "group-wide": "mask (group-wide: round 8's defaults, fine region m < 0.95)",
    "group-coarse": "mask (group-coarse: no fine stage)",
    "group-mu": "mask (group-mu: mu = 1, 5 %)",
    "group-sufficient": "mask (group-sufficient: 2, 4 or 8 %)",
    "voxel": "mask (voxel)",
    "group-fast": "mask (group-fast: bfloat16, 12 + 6 epochs)",
    "group-s1": "mask (group, default; mask seed 1)",
    "group-r23-s1": "mask (group-r23; mask seed 1)",
    "group-r25": "mask (group-r25: rounds 24-26's defaults, F12 with PyTorch's backward)",
    "group-r25-s1": "mask (group-r25; mask seed 1)",
}
BASELINES = ("occlusion", "integrated_gradients", "roi_ablation")
#: The same baselines with each session's healthy version max(X, H) in place of mu = 1
#: (the default masks' fill; image i with CN session i mod K, as the healthy curves pair
#: them): since round 28, so that the masks' lead does not turn on the fill alone.
HEALTHY_SUFFIX = " (healthy reference)"
HEALTHY_BASELINES = tuple(f"{m}{HEALTHY_SUFFIX}" for m in BASELINES)
#: The ground truth itself, scored as a map (the synthetic atrophy map: how much each
#: voxel was thinned): what a perfect localiser gets on each score, and so whether a
#: score measures localisation on these CNNs at all.
TRUTH = "ground truth (the atrophy map, not a method)"
IMAGES = 6


def neuromask(*args: str | Path) -> None:
    """One `neuromask` command, on one thread (the cohorts run side by side)."""
    command = [sys.executable, "-m", "neuromask", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("SUITE_THREADS", "1")}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)


def prepare(folder: Path, options: list[str], train: dict[str, object] | None = None) -> None:
    """synth, qc, split and train split 0 (with the settings ``train``, if any) through
    the command line (each skipped when done; `train` resumes by itself)."""
    synth, qc, split = folder / "synth", folder / "qc", folder / "split"
    if not (synth / "ground_truth" / "synth.json").is_file():
        neuromask("synth", synth, *COMMON, *options, "-q", "--overwrite")
    if not (qc / "qc.json").is_file():
        neuromask("qc", synth / "caps", synth / "participants.tsv", qc, "--overwrite")
    if not (split / "split.json").is_file():
        neuromask(
            "split", qc / "pass.tsv", split, "--test-subjects-per-class", "6", "--folds", "3",
            "--overwrite",
        )  # fmt: skip
    if not (folder / "models" / "split-0" / "run-0" / "validation_metrics.json").is_file():
        config = []
        if train:
            (folder / "train.toml").write_text(tomli_w.dumps(dict(train)))
            config = ["--config", folder / "train.toml"]
        neuromask("train", synth / "caps", split, folder / "models", "--split", "0", "-q", *config)


def expected_settings(label: str):
    """The mask settings that `neuromask mask group` runs for ``label`` today."""
    from neuromask.explain import mask_preset

    preset, settings = MASKS[label]
    return mask_preset(preset, **settings)


def made_with_other_settings(out: Path, label: str) -> bool:
    """Whether the finished mask in ``out`` was made with settings other than those
    ``label`` runs today (the defaults moved since): compared by the name a study gives
    a mask's settings, which leaves out settings added later at their neutral values."""
    from neuromask.config import from_mapping
    from neuromask.errors import NeuromaskError
    from neuromask.explain import MaskConfig
    from neuromask.studies.workspace import ADDED_SETTINGS, settings_key

    record = json.loads((out / "mask_job.json").read_text())["mask"]
    try:
        made = from_mapping(MaskConfig, {**ADDED_SETTINGS, **record}, source=str(out))
    except NeuromaskError:  # a setting that no longer exists
        return True
    return settings_key(made) != settings_key(expected_settings(label))


def mask(folder: Path, label: str) -> tuple[Path, float]:
    """`neuromask mask group` with the preset of ``label``; its folder
    and time (an interrupted job resumes). A finished mask made with other settings
    (the defaults moved since) stops the suite rather than enter its table."""
    out = folder / f"mask-{label}"
    if (out / "result.json").is_file() and made_with_other_settings(out, label):
        raise SystemExit(
            f"{out} holds a mask made with other settings than {label!r} runs now (the "
            "defaults moved since it was made): remove that folder and its .seconds file "
            "to make it again."
        )
    timing = out.parent / f"mask-{label}.seconds"
    sessions = folder / "mask_sessions.tsv"
    if not sessions.is_file():
        train = pd.read_csv(folder / "split" / "split-0" / "train.tsv", sep="\t")
        subjects = sorted(set(train.loc[train["diagnosis"] == "AD", "participant_id"]))
        train[train["participant_id"].isin(subjects[:MASK_SUBJECTS])].to_csv(
            sessions, sep="\t", index=False
        )
    if not (out / "result.json").is_file():
        settings = folder / f"mask-{label}.toml"
        settings.write_text(tomli_w.dumps(dict(MASKS[label][1])))
        tic = time.perf_counter()
        neuromask(
            "mask", "group", folder / "models" / "split-0" / "run-0", folder / "synth" / "caps",
            sessions, out, "--preset", MASKS[label][0],
            "--config", settings, "-q",
        )  # fmt: skip
        timing.write_text(f"{time.perf_counter() - tic:.1f}")
    return out, float(timing.read_text())


def reliance(
    trained, folder: Path, x, truth, atlas, caps: Path | None = None, train: Path | None = None
) -> dict[str, float]:
    """Does the CNN rely on the truth? Mean P(AD) of the scored AD sessions as they are,
    with their truly atrophied voxels taken from a CN session of the training set (drawn
    at random, seed 0), and with every other voxel taken from it. Only a CNN whose P(AD)
    falls in the first case and holds in the second can be explained by the truth. (A
    swap with real CN sessions, not with their mean: the mean map is smoother than any
    session, and these CNNs do not call it healthy where it replaces a region.) The CN
    sessions come from ``train`` of ``caps`` (by default ``folder``'s split 0 and CAPS,
    the suite's layout)."""
    import torch

    from neuromask.jobs.trained_model import _sessions_of
    from neuromask.models.inference import class_probabilities

    caps = caps or folder / "synth" / "caps"
    train = train or folder / "split" / "split-0" / "train.tsv"
    _, _, cn = _sessions_of(trained.record, caps, train, "CN", "no CN session", None, False)
    cn = torch.as_tensor(np.asarray(cn, dtype=np.float32)).reshape(-1, *x.shape[1:])
    donors = cn[torch.randint(len(cn), (len(x),), generator=torch.Generator().manual_seed(0))]
    inside = truth.voxels
    if inside is None:
        values = atlas.rois.loc[atlas.rois["roi_name"].isin(truth.rois), "roi_value"]
        inside = np.isin(atlas.labels, values.to_numpy())
    where = torch.as_tensor(np.asarray(inside, dtype=bool))
    p = {
        "as is": x,
        "truth from a CN session": torch.where(where, donors, x),
        "the rest from a CN session": torch.where(where, x, donors),
    }
    return {
        name: float(class_probabilities(trained.model, v, target=1).mean()) for name, v in p.items()
    }


def score_cohort(
    name: str, root: Path, labels: tuple[str, ...] = tuple(MASKS), rescore: bool = False
) -> pd.DataFrame:
    """Every method's scores on one cohort (cached in its folder as scores.tsv; a mask
    asked for or a baseline that the cache lacks is added to it). ``rescore``: score
    every map again (masks from their folders, baselines from their cached maps), as
    after a change of the scores."""
    import torch
    from mask_levers import score_map  # benchmarks/: one way to score a map

    from neuromask.explain.baselines import attribute
    from neuromask.explain.reference import HealthyReference
    from neuromask.io.atlas import load_aal2
    from neuromask.io.nifti import load_volume
    from neuromask.jobs.trained_model import TrainedModel, brain_mask_of
    from neuromask.metrics.localization import read_ground_truth
    from neuromask.models.inference import class_probabilities
    from neuromask.runtime import tune_allocator

    # the allocator as the `neuromask` command tunes it (since round 25): without it,
    # occlusion ran at 20-30 s per 3 mm session here, about 5 s in
    # `benchmarks/bench_mask_cost.py` (round 24)
    tune_allocator()
    torch.set_num_threads(int(os.environ.get("SUITE_THREADS", "1")))
    folder = root / name
    cached = folder / "scores.tsv"
    done = pd.read_csv(cached, sep="\t") if cached.is_file() and not rescore else None
    have = set(done["method"]) if done is not None else set()
    wanted = {LABELS[label] for label in labels} | {*BASELINES, *HEALTHY_BASELINES, TRUTH}
    complete = done is not None and wanted <= have
    if complete and (folder / "reliance.json").is_file():
        return done
    prepare(folder, COHORTS[name], TRAIN_SETTINGS.get(name))
    trained = TrainedModel.open(folder / "models" / "split-0" / "run-0", "cpu")
    val, _ = trained.validation_ad_sessions(progress=False)
    grid = val.data.grid
    atlas = load_aal2(grid)
    truth = read_ground_truth(folder / "synth" / "ground_truth", grid)
    brain = brain_mask_of(val.data.images)
    x = val.images[:IMAGES]
    voxel_mm = float(np.mean(grid.voxel_size))
    window = max(1, round(24 / voxel_mm))

    if not (folder / "reliance.json").is_file():
        (folder / "reliance.json").write_text(
            json.dumps(reliance(trained, folder, x, truth, atlas))
        )
    if complete:
        return done

    healthy = HealthyReference(trained.training_cn_sessions(), trained.device)

    def row(method: str, relevance: np.ndarray, seconds: float, p_ad: float) -> dict:
        scores = score_map(relevance, trained.model, x, brain, atlas, truth, healthy)
        return {"cohort": name, "method": method, **scores, "p_ad_masked": p_ad, "seconds": seconds}

    def fills(m: np.ndarray) -> dict[str, float]:
        """P(AD) of the validation AD sessions under the mask, its deleted voxels filled
        with mu = 1 and with healthy tissue (max(X, H), neuromask.explain.reference)."""
        shared = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
        p = {
            f"p_ad_{k}": float(
                np.mean(class_probabilities(trained.model, val.images, shared, target=1, mu=fill))
            )
            for k, fill in (("mu", 1.0), ("healthy", healthy))
        }
        return p

    rows = []
    for label in MASKS:
        if LABELS[label] in have or (
            label not in labels and not (folder / f"mask-{label}" / "result.json").is_file()
        ):
            continue
        out, seconds = mask(folder, label)
        m = load_volume(out / "mask.nii.gz")[0]
        result = json.loads((out / "result.json").read_text())
        rows.append(
            {
                **row(LABELS[label], 1 - m, seconds, result["validation_mean_p_ad_masked"]),
                **fills(m),
            }
        )
    for baseline in (*BASELINES, *HEALTHY_BASELINES):
        if baseline in have:
            continue
        method = baseline.removesuffix(HEALTHY_SUFFIX)
        reference = healthy.paired(x, range(len(x))) if baseline != method else None
        stem = f"baseline_{method}" + ("_healthy" if reference is not None else "")
        cache, timing = folder / f"{stem}.npy", folder / f"{stem}.seconds"
        if not cache.is_file():
            tic = time.perf_counter()
            maps = attribute(
                method,
                trained.model,
                x,
                reference=reference,
                atlas_labels=atlas.labels,
                window=window,
            )
            timing.write_text(f"{time.perf_counter() - tic:.1f}")
            np.save(cache, maps.abs().mean(0)[0].numpy())
        rows.append(row(baseline, np.load(cache), float(timing.read_text()), float("nan")))
    if TRUTH not in have:
        atrophy = load_volume(folder / "synth" / "ground_truth" / "atrophy_map.nii.gz", grid)[0]
        rows.append(row(TRUTH, atrophy, float("nan"), float("nan")))
    table = pd.concat([done, pd.DataFrame(rows)], ignore_index=True)
    for label in MASKS:  # masks scored before the fill columns existed
        at = table["method"] == LABELS[label]
        if at.any() and ("p_ad_mu" not in table or table.loc[at, "p_ad_mu"].isna().any()):
            m = load_volume(folder / f"mask-{label}" / "mask.nii.gz")[0]
            for key, value in fills(m).items():
                table.loc[at, key] = value
    table.to_csv(cached, sep="\t", index=False)
    return table


COLUMNS = {
    "voxel_auc": "voxel AUC",
    "precision_at_k": "precision@k",
    "recall_at_k": "recall@k",
    "mass_accuracy": "mass",
    "coherence": "coherence",
    "coherence_top2": "coherence (top 2 %)",
    "insertion_auc": "insertion ↑",
    "insertion_healthy_auc": "insertion from healthy ↑",
    "deletion_healthy_auc": "deletion to healthy ↓",
    "road_auc": "ROAD ↓",
    "road_healthy_auc": "ROAD on a healthy anatomy ↓",
    "deletion_auc": "deletion ↓",
    "p_ad_masked": "masked P(AD)",
    "p_ad_mu": "P(AD), μ fill",
    "p_ad_healthy": "P(AD), healthy fill",
    "seconds": "time (s)",
}


def markdown(table: pd.DataFrame) -> str:
    grouped = table.groupby("method", sort=False)
    mean, sd = grouped[list(COLUMNS)].mean(), grouped[list(COLUMNS)].std()
    lines = ["| method | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method in mean.index:
        cells = [
            "–"
            if np.isnan(mean.loc[method, c])
            else f"{mean.loc[method, c]:.3g} ± {sd.loc[method, c]:.2g}"
            for c in COLUMNS
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--rescore", action="store_true", help="score every cached map again (masks, baselines)"
    )
    parser.add_argument(
        "--masks",
        default=",".join(MASKS),
        help=f"masks to run, of {', '.join(MASKS)} (done ones are kept)",
    )
    args = parser.parse_args()
    names = [n for n in args.cohorts.split(",") if n]
    unknown = set(names) - set(COHORTS)
    if unknown:
        parser.error(f"unknown cohorts {sorted(unknown)}; valid: {', '.join(COHORTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        presets = tuple(p for p in args.masks.split(",") if p)
        tables = list(
            pool.map(
                score_cohort,
                names,
                [args.out] * len(names),
                [presets] * len(names),
                [args.rescore] * len(names),
            )
        )
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(args.out / "suite.tsv", sep="\t", index=False)
    for name, part in table.groupby("cohort", sort=False):
        print(f"\n## {name}\n")
        print(part.drop(columns="cohort").round(3).to_string(index=False))
    print("\n## P(AD) of the scored sessions: does each CNN rely on the truth?\n")
    rely = {n: json.loads((args.out / n / "reliance.json").read_text()) for n in names}
    print("| cohort | as is | truth from a CN session | the rest from a CN session |")
    print("|---|---|---|---|")
    for n, r in rely.items():
        print(f"| {n} | " + " | ".join(f"{v:.3g}" for v in r.values()) + " |")
    print(f"\n## mean ± SD over {len(names)} cohorts\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
