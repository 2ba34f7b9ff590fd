"""Cost of a mask step against its floor, and session masks batched vs one by one.

Usage: python benchmarks/bench_masks.py [--voxel-size 3] [--steps 10] [--sessions 8]

The floor of a mask step is the frozen CNN's forward pass plus the backward pass to the
input, on the same batch, through the kernels of the mask's setting ``convolution`` (since
round 27; before, PyTorch's own, so that a mask step on oneDNN could come in under it). Printed side by side, in one run:
  1. a group-mask step (`MeaningfulPerturbation.group_step`: scores and their gradient,
     the size or area and smoothness terms in closed form, Adam, projection to [0, 1])
     over the floor, for batches of 1 and 8 images, for the default mask (coarse, under
     the area constraint, over a brain mask, the healthy reference), the same with
     mu = 1 (preset `group-mu`) and the voxel-level one (preset `voxel`);
  2. session masks for N images with a fixed number of steps, B at a time vs one by one.
On CUDA, the same with bf16 autocast of the CNN.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.explain.adam import SlotAdam
from neuromask.explain.parametrisation import MaskGrid
from neuromask.io.grid import clinica_grid
from neuromask.models import build_model
from neuromask.models.cpu_convolution import kernels_of


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()
    sync(device)
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - tic) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-size", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--preset", default="conv5_fc3")
    args = parser.parse_args()
    shape = clinica_grid(args.voxel_size).shape
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
        f"grid {shape}, model {args.preset}"
    )
    for device in devices:
        model = build_model(args.preset, shape).to(device).eval()
        gen = torch.Generator().manual_seed(0)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        brain = torch.zeros((1, 1, *shape), dtype=torch.bool, device=device)
        brain[..., 8:-8, 8:-8, 8:-8] = True  # a brain mask, as the mask jobs derive one
        healthy = torch.rand(8, *shape, generator=gen)  # CN sessions of the healthy reference
        for preset, batch in ((p, b) for p in ("group", "group-mu", "voxel") for b in (1, 8)):
            config = mask_preset(preset)
            explainer = MeaningfulPerturbation(
                model,
                config,
                device=device,
                brain_mask=brain[0, 0].cpu().numpy(),
                reference=healthy if config.reference == "healthy" else None,
            )
            explainer.grid_map = MaskGrid(shape, config.upsample, brain)  # as attribute sets
            images = torch.rand(batch, 1, *shape, generator=gen).to(device)

            def floor(config=config) -> None:
                x = images.clone().requires_grad_(True)
                with autocast, kernels_of(config.convolution):
                    out = model(x)
                torch.autograd.grad(out[:, 1].float().sum(), x)

            mask = explainer.grid_map.ones(1, device)
            adam = SlotAdam(mask, 0.1)

            def step() -> None:
                with autocast:
                    explainer.group_step(mask, adam, images, 1)

            t_floor, t_step = timed(floor, args.steps, device), timed(step, args.steps, device)
            # measured twice, interleaved, to even out drift of the machine
            t_floor = (t_floor + timed(floor, args.steps, device)) / 2
            t_step = (t_step + timed(step, args.steps, device)) / 2
            print(
                f"{device.type:5} group step ({preset}), batch {batch}: floor "
                f"{1000 * t_floor:8.1f} ms, mask step {1000 * t_step:8.1f} ms, "
                f"ratio {t_step / t_floor:5.3f}"
            )

        images = torch.rand(args.sessions, 1, *shape, generator=gen)
        config = mask_preset("session", max_epochs=args.steps, patience=10**6, tolerance=0.0)
        timings = {}
        for b in (args.sessions, 1):
            runner = MeaningfulPerturbation(
                model, mask_preset("session", **{**config.__dict__, "batch_size": b}), device=device
            )
            tic = time.perf_counter()
            with autocast:
                runner.attribute(images, 1, mode="session")
            sync(device)
            timings[b] = time.perf_counter() - tic
        print(
            f"{device.type:5} session masks, {args.sessions} images x {args.steps} steps: "
            f"batched ({args.sessions} at once) {timings[args.sessions]:7.2f} s, one by one {timings[1]:7.2f} s, "
            f"speed-up {timings[1] / timings[args.sessions]:5.2f}x"
        )


if __name__ == "__main__":
    main()
