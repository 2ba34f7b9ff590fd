"""A mask step's kernels on the CPU: PyTorch's own choice, oneDNN (forward, pooling,
backward), bfloat16, side by side.

Usage: python benchmarks/bench_convolution.py [--grids 3,1.5] [--rounds 7] [--steps 5]
           [--threads 2]

One mask step is ``score_and_gradient`` at mini-batch 1: the frozen conv5_fc3 CNN's
forward pass on a masked image and its backward pass to the input, what every group-
and session-mask step runs. For each grid (3 mm: 61 x 73 x 61; 1.5 mm: the Clinica grid,
121 x 145 x 121) the script times ``--steps`` steps of each setting in turn, ``--rounds``
times, the settings interleaved (A B C A B C ...) so that a slow spell of the machine
(another tenant, a stolen CPU) falls on all of them alike. It prints the median seconds
per step (wall clock and the process's CPU time) and each setting's speed-up over
``convolution = "auto"``, and how far its gradient is from auto's. "onednn, PyTorch's
pooling" is ``"onednn"`` with max pooling left to PyTorch's own kernel, as it ran before
round 26 (the channels-last pooling gives the same gradient bit for bit, so its
difference from auto must equal onednn's). The CNN's weights are
random (a kernel's speed does not depend on them); the allocator is tuned as the
``neuromask`` command tunes it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Iterator
from unittest import mock

import torch

from neuromask.explain import MaskConfig
from neuromask.explain.objective import score_and_gradient
from neuromask.models import cpu_convolution
from neuromask.models.registry import build_model
from neuromask.runtime import tune_allocator

SHAPES = {"3": (61, 73, 61), "1.5": (121, 145, 121)}
SETTINGS = {
    "auto": {"convolution": "auto"},
    "onednn, PyTorch's pooling": {"convolution": "onednn"},
    "onednn": {"convolution": "onednn"},
    "onednn-backward": {"convolution": "onednn-backward"},
    "bfloat16": {"precision": "bfloat16"},
}


@contextlib.contextmanager
def pooling_of(name: str) -> Iterator[None]:
    """Leave max pooling to PyTorch's kernel for the setting that says so."""
    if "PyTorch's pooling" not in name:
        yield
        return
    with mock.patch.object(cpu_convolution, "_channels_last_max_pool", lambda *a, **k: None):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="3,1.5")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()
    base = MaskConfig(reference="constant")
    print(
        "| grid | setting | wall s/step | CPU s/step | speed-up (wall) | speed-up (CPU) | gradient's largest difference from auto |"
    )
    print("|---|---|---|---|---|---|---|")
    for grid in args.grids.split(","):
        torch.manual_seed(0)
        shape = SHAPES[grid]
        model = build_model("conv5_fc3", shape).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        image = torch.rand(1, 1, *shape)
        masks = torch.full_like(image, 0.9)
        configs = {n: dataclasses.replace(base, **f) for n, f in SETTINGS.items()}
        grads = {}
        for name, config in configs.items():
            with pooling_of(name):
                grads[name] = score_and_gradient(model, image, masks, config, 1)[2]
        wall: dict[str, list[float]] = {n: [] for n in configs}
        cpu: dict[str, list[float]] = {n: [] for n in configs}
        for _ in range(args.rounds):
            for name, config in configs.items():
                with pooling_of(name):
                    tic, cpu_tic = time.perf_counter(), time.process_time()
                    for _ in range(args.steps):
                        score_and_gradient(model, image, masks, config, 1)
                wall[name].append((time.perf_counter() - tic) / args.steps)
                cpu[name].append((time.process_time() - cpu_tic) / args.steps)
        w0, c0 = statistics.median(wall["auto"]), statistics.median(cpu["auto"])
        scale = float(grads["auto"].abs().max())
        for name in configs:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            diff = float((grads[name] - grads["auto"]).abs().max()) / scale
            print(
                f"| {grid} mm | {name} | {w:.3f} | {c:.3f} | {w0 / w:.2f}x | {c0 / c:.2f}x | "
                f"{diff:.1e} of its largest value |",
                flush=True,
            )


if __name__ == "__main__":
    main()
