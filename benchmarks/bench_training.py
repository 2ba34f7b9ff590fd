"""Training and inference throughput of the CNN presets, side by side in one run.

Usage: python benchmarks/bench_training.py [--steps 5] [--grids 3 1.5]

For each grid (3 mm and the full 1.5 mm Clinica grid) and preset, prints images per
second for a training step (forward, backward, Adam step) and for inference, and the
share of a training step spent copying the mini-batch out of the in-memory dataset,
which is the only per-step data work. On CUDA, training uses bf16 autocast as
`neuromask train` does.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from neuromask.io.grid import clinica_grid
from neuromask.models import build_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(
    preset: str, shape: tuple[int, int, int], batch: int, steps: int, device: torch.device
) -> dict:
    gen = np.random.default_rng(0)
    n_images = batch * 4
    dataset = torch.from_numpy(gen.random((n_images, 1, *shape), dtype=np.float32))
    labels = torch.from_numpy(gen.integers(0, 2, n_images))
    model = build_model(preset, shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"

    def batch_copy(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.arange(i * batch, (i + 1) * batch) % n_images)
        return dataset[idx].to(device, non_blocking=True), labels[idx].to(device)

    def train_step(i: int) -> None:
        x, y = batch_copy(i)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    model.train()
    train_step(0)  # warm-up
    sync(device)
    tic = time.perf_counter()
    for i in range(steps):
        train_step(i)
    sync(device)
    t_train = (time.perf_counter() - tic) / steps

    tic = time.perf_counter()
    for i in range(steps):
        batch_copy(i)
    sync(device)
    t_copy = (time.perf_counter() - tic) / steps

    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model(batch_copy(0)[0])
        sync(device)
        tic = time.perf_counter()
        for i in range(steps):
            model(batch_copy(i)[0])
        sync(device)
    t_infer = (time.perf_counter() - tic) / steps
    return {"train": batch / t_train, "infer": batch / t_infer, "copy_share": t_copy / t_train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--grids", type=float, nargs="+", default=[3.0, 1.5])
    parser.add_argument("--presets", nargs="+", default=["conv5_fc3", "paper"])
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print(
        f"{'device':6} {'grid':>14} {'preset':10} {'batch':>5} {'train img/s':>12} {'infer img/s':>12} {'batch copy':>11}"
    )
    for device in devices:
        for voxel in args.grids:
            shape = clinica_grid(voxel).shape
            batch = 8 if voxel >= 3 else 4
            if device.type == "cuda":
                batch *= 4
            for preset in args.presets:
                r = bench(preset, shape, batch, args.steps, device)
                grid = "x".join(map(str, shape))
                print(
                    f"{device.type:6} {grid:>14} {preset:10} {batch:5d} {r['train']:12.1f} "
                    f"{r['infer']:12.1f} {100 * r['copy_share']:10.2f}%"
                )


if __name__ == "__main__":
    main()
