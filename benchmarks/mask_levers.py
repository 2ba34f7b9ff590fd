"""Which mask settings localise best? Every lever of issue 13 on tuning cohorts.

Usage: python benchmarks/mask_levers.py OUT.tsv COHORT [COHORT ...]
           [--setting NAME:key=value,key=value ...] [--images 6] [--baselines]

Each COHORT folder holds what `neuromask synth | qc | split | train --split 0` wrote
(synth/, split/, models/split-0/run-0/); `benchmarks/localisation_suite.py` makes them.
For every cohort and setting it trains a group mask on the correctly classified AD
sessions of split 0's training set, with its validation set for early stopping, and
scores it on the validation AD sessions: localisation against the ground truth (k = the
number of truly atrophied ROIs), coherence, insertion / deletion / ROAD areas, masked
P(AD) (with the mask's own fill, with mu = 1 and with healthy tissue, see
:mod:`neuromask.explain.reference`), wall time and the process's CPU time (``cpu_seconds``:
a CPU taken by another tenant of the machine does not inflate it, so a rule's time bar is
judged on it). ``--baselines`` adds occlusion (cubes of 24 mm),
integrated gradients and ROI ablation, each with mu = 1 and with each session's healthy
version as its reference (run once per cohort, cached in the cohort folder). The
cohorts used here must not be those of the reported suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.explain.baselines import attribute
from neuromask.explain.reference import HealthyReference
from neuromask.io.atlas import load_aal2
from neuromask.jobs.trained_model import TrainedModel, brain_mask_of, cn_reference
from neuromask.metrics.coherence import coherence
from neuromask.metrics.faithfulness import faithfulness_curves
from neuromask.metrics.localization import read_ground_truth
from neuromask.models.inference import class_probabilities
from neuromask.runtime import tune_allocator

BASELINES = ("occlusion", "integrated_gradients", "roi_ablation")


def parse_setting(text: str) -> tuple[str, dict[str, object]]:
    name, _, body = text.partition(":")
    fields: dict[str, object] = {}
    for item in filter(None, body.split(",")):
        key, value = item.split("=")
        if key == "larger_areas":  # larger_areas=0.04/0.08
            fields[key] = tuple(float(a) for a in value.split("/") if a)
            continue
        for cast in (int, float):
            try:
                fields[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            fields[key] = {"true": True, "false": False}.get(value, value)
    return name, fields


def score_map(relevance, model, val, brain, atlas, truth, healthy=None) -> dict[str, float]:
    """Every score of one relevance map (the levers' table and the localisation suite).

    With ``healthy`` (a HealthyReference) the deletion and insertion curves are also
    drawn with healthy tissue as the reference (image i with CN session i mod K):
    insertion then starts from each image's healthy version, max(X, H), instead of a
    brain of pure GM, which these CNNs call healthy whatever is put back."""
    s = truth.scores(relevance, atlas, k=len(truth.rois), kind="attribution")
    c = coherence(relevance, brain)
    # the top 2 % alone (the default mask's area): what the mask deletes, without the
    # kept voxels that the halo ranks next
    top2 = coherence(relevance, brain, fraction=0.02)
    curves = faithfulness_curves(model, val, relevance, brain, reference=1.0)
    extra = {}
    if healthy is not None:
        start = healthy.paired(val, range(len(val)))
        # ROAD on the residual from each image's CN session (image i with session i mod K)
        anatomy = healthy.sessions[torch.as_tensor(np.arange(len(val)) % len(healthy))]
        areas = faithfulness_curves(
            model, val, relevance, brain, reference=start, road_anatomy=anatomy.cpu()
        ).areas()
        extra = {
            "insertion_healthy_auc": areas["insertion_auc"],
            "deletion_healthy_auc": areas["deletion_auc"],
            "road_healthy_auc": areas["road_auc"],
        }
    return {
        "voxel_auc": s.voxel_auc,
        "precision_at_k": s.roi_precision_at_k,
        "recall_at_k": s.roi_recall_at_k,
        "mass_accuracy": s.mass_accuracy,
        "coherence": c.coherence,
        "components": c.components,
        "coherence_top2": top2.coherence,
        **curves.areas(),
        **extra,
    }


def open_cohort(cohort: Path):
    """A tuning cohort's trained CNN, its training and validation AD sessions, the AAL2
    atlas and ground truth on its grid, its brain mask and its healthy reference (the
    CNN's CN training sessions)."""
    trained = TrainedModel.open(cohort / "models" / "split-0" / "run-0", "cpu")
    caps, split = cohort / "synth" / "caps", cohort / "split" / "split-0"
    train = trained.ad_sessions(caps, split / "train.tsv", progress=False)
    val = trained.ad_sessions(caps, split / "validation.tsv", progress=False)
    grid = train.data.grid
    atlas = load_aal2(grid)
    truth = read_ground_truth(cohort / "synth" / "ground_truth", grid)
    brain = brain_mask_of(train.data.images)
    healthy = HealthyReference(trained.training_cn_sessions(), trained.device)
    return trained, train, val, atlas, truth, brain, healthy


def run_cohort(
    cohort: Path, settings, images: int, baselines: bool, train_images: int = 0
) -> list[dict]:
    trained, train, val, atlas, truth, brain, healthy = open_cohort(cohort)
    references = {
        "cn_mean": cn_reference(
            trained, cohort / "synth" / "caps", cohort / "split" / "split-0" / "train.tsv"
        ),
        "healthy": healthy.sessions[:, 0].cpu().numpy(),
    }
    x_val = val.images[:images]
    x_train = train.images[:train_images] if train_images else train.images
    rows = []
    for name, fields in settings:
        base = fields.pop("preset", "group")
        # sweep=A/B/C: one mask per area, averaged (Fong et al. 2019 sum their masks)
        areas = [float(a) for a in str(fields.pop("sweep", "")).split("/") if a]
        # extremal=A/B/C: areas in turn, keeping the first whose mask fools the CNN
        # (masked validation P(AD) < 0.05), Fong et al. 2019's smallest sufficient area
        extremal = [float(a) for a in str(fields.pop("extremal", "")).split("/") if a]
        config = dataclasses.replace(mask_preset(str(base)), **fields)
        # a swept or extremal area is one area, not the defaults' ladder
        one_area: dict[str, object] = {"larger_areas": ()} if extremal or areas else {}
        tic, cpu = time.perf_counter(), time.process_time()
        swept, probabilities, epochs = [], [], 0
        for area in extremal or areas or [config.area]:
            explainer = MeaningfulPerturbation(
                trained.model,
                dataclasses.replace(config, area=area, **one_area),
                brain_mask=brain,
                reference=references.get(config.reference),
            )
            masks, result = explainer.attribute(x_train, 1, validation=val.images)
            probabilities.append(float(np.mean(explainer.probabilities(val.images, 1, masks))))
            swept.append(masks[0, 0].numpy())
            epochs += len(result.history)
            if result.areas_tried:
                print(f"{name}: areas tried {result.areas_tried}", flush=True)
            if extremal and probabilities[-1] < 0.05:
                break
        seconds = (time.perf_counter() - tic, time.process_time() - cpu)
        m = swept[-1] if extremal else np.mean(swept, axis=0)
        p = probabilities[-1] if extremal else probabilities[len(probabilities) // 2]
        if len(probabilities) > 1:
            tried = dict(zip((extremal or areas)[: len(probabilities)], probabilities, strict=True))
            print(f"{name}: masked P(AD) per area {tried}", flush=True)
        ctx = {"trained": trained, "val": val, "x_val": x_val, "healthy": healthy}
        ctx.update(brain=brain, atlas=atlas, truth=truth)
        variants = [(name, m, p)]
        if extremal and len(swept) > 1:
            # the masks up to the sufficient one, averaged: a voxel ranks by the smallest
            # area that deletes it (Fong et al. 2019 sum theirs)
            variants.append((f"{name}+nested", np.mean(swept, axis=0), p))
        for name, m, p in variants:
            np.save(cohort / f"lever_{name}.npy", m)  # rescored without training again
            rows.append(_mask_row(cohort.name, name, m, p, epochs, seconds, ctx, not rows))
    if baselines:
        rows += _baseline_rows(cohort, trained, x_val, images, brain, atlas, truth, healthy)
    return rows


def _mask_row(cohort, name, m, p, epochs, seconds, ctx, print_header) -> dict:
    """Every score of one mask (``ctx``: the cohort's model, images, atlas and truth)."""
    trained, val, x_val, healthy = ctx["trained"], ctx["val"], ctx["x_val"], ctx["healthy"]
    brain, atlas, truth = ctx["brain"], ctx["atlas"], ctx["truth"]
    shared = torch.from_numpy(np.ascontiguousarray(m)).reshape(1, 1, *m.shape)
    row = {
        "cohort": cohort,
        "method": name,
        **score_map(1 - m, trained.model, x_val, brain, atlas, truth, healthy),
        "p_ad_masked": p,
        # the same mask, its deleted voxels filled with mu = 1 and with healthy tissue
        # (max(X, H), validation image i with CN session i mod K): a mask that shows
        # what the CNN uses should fool it in both
        "p_ad_mu": float(np.mean(class_probabilities(trained.model, val.images, shared, target=1))),
        "p_ad_healthy": float(
            np.mean(class_probabilities(trained.model, val.images, shared, target=1, mu=healthy))
        ),
        "deleted": float((m < 0.5).mean()),
        "epochs": epochs,
        "seconds": seconds[0],
        "cpu_seconds": seconds[1],
    }
    print(pd.DataFrame([row]).round(3).to_string(index=False, header=print_header), flush=True)
    return row


def _baseline_rows(cohort, trained, x_val, images, brain, atlas, truth, healthy) -> list[dict]:
    # occlusion's cubes of 24 mm at every voxel size, as in the localisation suite (8
    # voxels at 3 mm, 16 at 1.5 mm)
    window = max(1, round(24 / float(np.mean(atlas.grid.voxel_size))))
    rows = []
    # each with mu = 1 and with each session's healthy version (round 28: the default
    # masks' own fill; image i with CN session i mod K, as the healthy curves pair them)
    for method, fill in [(m, f) for f in ("", "_healthy") for m in BASELINES]:
        cache = cohort / f"baseline_{method}{fill}_{images}_w{window}.npy"
        reference = healthy.paired(x_val, range(len(x_val))) if fill else None
        tic, cpu = time.perf_counter(), time.process_time()
        if cache.is_file():
            relevance = np.load(cache)
            seconds = cpu_seconds = float("nan")
        else:
            maps = attribute(
                method,
                trained.model,
                x_val,
                reference=reference,
                atlas_labels=atlas.labels,
                window=window,
            )
            relevance = maps.abs().mean(0)[0].numpy()
            seconds, cpu_seconds = time.perf_counter() - tic, time.process_time() - cpu
            np.save(cache, relevance)
        row = {
            "cohort": cohort.name,
            "method": method + (" (healthy reference)" if fill else ""),
            **score_map(relevance, trained.model, x_val, brain, atlas, truth, healthy),
            "p_ad_masked": float("nan"),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
        print(pd.DataFrame([row]).round(3).to_string(index=False, header=False), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("cohorts", type=Path, nargs="+")
    parser.add_argument("--setting", action="append", default=[])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--baselines", action="store_true")
    parser.add_argument("--train-images", type=int, default=0, help="only the first N (0: all)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()
    torch.manual_seed(0)
    settings = [parse_setting(s) for s in args.setting] or [("default", {})]
    rows = []
    for cohort in args.cohorts:
        rows += run_cohort(
            cohort,
            [(n, dict(f)) for n, f in settings],
            args.images,
            args.baselines,
            args.train_images,
        )
    table = pd.DataFrame(rows)
    table.to_csv(args.out, sep="\t", index=False)
    summary = table.drop(columns=["cohort"]).groupby("method", sort=False).mean()
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
