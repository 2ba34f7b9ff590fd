"""What a default group mask costs per session against occlusion, side by side in one run.

Usage: python benchmarks/bench_mask_cost.py COHORT [--images 6] [--train-images 16]
           [--threads 2] [--skip-old] [--preset group] [--setting [NAME:]key=value,... ...]

COHORT is a folder that `benchmarks/localisation_suite.py` or the tuning cohorts'
scripts wrote (synth/, split/, models/split-0/run-0/). In one process, with the
allocator tuned as the ``neuromask`` command tunes it, the script times:

- occlusion (cubes of 24 mm, Captum, 8 images per forward pass) on the first
  ``--images`` validation AD sessions, as ``neuromask`` runs it since round 19 (one
  image at a time, 8 perturbed copies per pass) and, unless ``--skip-old``, as it ran
  before (every image at once, so passes of 8 copies of each: 48 images for 6);
- the default group mask (``mask_preset("group")``, or each of ``--preset``'s, with
  ``--setting``'s values on top; healthy reference) on the first
  ``--train-images`` correctly classified training AD sessions, with the validation AD
  sessions for early stopping and the ladder's judgement, as `benchmarks/mask_levers.py`
  trains it.

It prints seconds per session of each, wall clock and the process's CPU time (which a
CPU taken by another tenant of the machine does not inflate), their ratios (issue 13's
goal: a group mask at most 1/5 of occlusion's time per session) and how far the two
occlusion maps differ. ``--preset`` takes several presets, comma-separated, and
``--setting`` may be given several times (``NAME:key=value,...``, as in
`benchmarks/mask_levers.py`): every preset with every setting is timed against the same
occlusion run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from mask_levers import parse_setting

from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.explain.baselines import attribute
from neuromask.jobs.trained_model import TrainedModel, brain_mask_of
from neuromask.runtime import tune_allocator


def occlusion_old_way(model: torch.nn.Module, images: torch.Tensor, window: int) -> torch.Tensor:
    """Occlusion as ``attribute`` ran it before round 19: all images in one Captum call,
    ``perturbations_per_eval = 8``, so that a pass holds 8 copies of every image."""
    import captum.attr as attr

    return attr.Occlusion(model).attribute(
        images.float(),
        sliding_window_shapes=(1, window, window, window),
        strides=(1, window, window, window),
        baselines=1.0,
        target=1,
        perturbations_per_eval=8,
    )


def timed(run):
    """``run()``'s result, wall seconds and the process's CPU seconds (which a CPU taken
    by another tenant of the machine does not inflate)."""
    tic, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - tic, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-old", action="store_true")
    parser.add_argument("--preset", default="group", help="presets, comma-separated")
    parser.add_argument(
        "--setting", action="append", default=[], help="[NAME:]key=value,... on each preset"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()
    cohort = args.cohort
    trained = TrainedModel.open(cohort / "models" / "split-0" / "run-0", "cpu")
    caps = cohort / "synth" / "caps"
    split = cohort / "split" / "split-0"
    train = trained.ad_sessions(caps, split / "train.tsv", progress=False)
    val = trained.ad_sessions(caps, split / "validation.tsv", progress=False)
    grid = train.data.grid
    # occlusion's cubes of 24 mm, as in the localisation suite and mask_levers.py
    window = max(1, round(24 / float(np.mean(grid.voxel_size))))
    x_val = val.images[: args.images]
    print(f"{cohort.name}: grid {grid.shape}, occlusion cubes of {window} voxels", flush=True)

    with torch.no_grad():  # the first passes of a shape pay for setting up its kernels
        trained.model(x_val[:1].expand(8, *x_val.shape[1:]).float())
    per_session: dict[str, tuple[float, float]] = {}
    new, wall, cpu = timed(
        lambda: attribute("occlusion", trained.model, x_val, window=window, batch_size=8)
    )
    per_session["occlusion"] = (wall / len(x_val), cpu / len(x_val))
    print(f"occlusion, one image at a time: {wall / len(x_val):.2f} s/session "
          f"(CPU {cpu / len(x_val):.2f} s)", flush=True)  # fmt: skip
    if not args.skip_old:
        old, wall, cpu = timed(lambda: occlusion_old_way(trained.model, x_val, window))
        per_session["occlusion before round 19"] = (wall / len(x_val), cpu / len(x_val))
        diff = float((old - new).abs().max() / new.abs().max())
        print(
            f"occlusion, all images at once: {wall / len(x_val):.2f} s/session (CPU "
            f"{cpu / len(x_val):.2f} s; largest difference between the maps: {diff:.1e} of "
            "the largest value)",
            flush=True,
        )

    x_train = train.images[: args.train_images]
    brain = brain_mask_of(train.data.images)
    occlusions = list(per_session.items())
    settings = [parse_setting(t if ":" in t else ":" + t) for t in args.setting] or [("", {})]
    runs = [(p, name, fields) for p in args.preset.split(",") for name, fields in settings]
    for preset, name, fields in runs:
        config = dataclasses.replace(mask_preset(preset), **fields)
        label = f"{preset} {name}".strip()
        explainer = MeaningfulPerturbation(
            trained.model, config, brain_mask=brain, reference=trained.training_cn_sessions()
        )
        explainer.progress = False
        (_, result), wall, cpu = timed(
            lambda e=explainer: e.attribute(x_train, 1, validation=val.images)
        )
        wall, cpu = wall / len(x_train), cpu / len(x_train)
        tried = ", ".join(
            f"{a['area']:.0%} ({a['p_masked']:.3f})" for a in result.areas_tried or []
        )
        print(
            f"group mask, {label} {fields or ''}: {wall:.2f} s/session (CPU {cpu:.2f} s; "
            f"{len(x_train)} sessions, {len(val.images)} validation sessions, "
            f"{len(result.history)} epochs; areas tried: {tried})",
            flush=True,
        )
        for method, (o_wall, o_cpu) in occlusions:
            print(f"{label} / {method}: {wall / o_wall:.3f} (CPU time: {cpu / o_cpu:.3f})")


if __name__ == "__main__":
    main()
