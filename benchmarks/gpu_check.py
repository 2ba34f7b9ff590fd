"""The GPU check: training and mask throughput on one device, side by side in one run.

Usage: python benchmarks/gpu_check.py [--device cuda] [--smoke] [--out FILE.tsv]

Prints one table (and writes it as TSV with --out):

- training images/s of the ``paper`` and ``conv5_fc3`` CNNs, float32 and under bfloat16
  autocast (AMP), batch 8;
- a group-mask step (default settings) over its floor, the CNN's forward and backward to
  the input on the same batch, batch 1 and 8;
- session masks, 8 at once against one by one (default session settings, 3 epochs each):
  masks per second and the ratio; and with ``--batch-size auto`` (as many as the free
  memory holds) on 32 images;
- the peak device memory of each (CUDA only).

On the Clinica grid (1.5 mm, 121 x 145 x 121) by default; ``--smoke`` uses the 6 mm grid,
tiny batches and one repetition, so that the whole check runs in seconds on a CPU (the
test suite runs it that way).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.io.grid import clinica_grid
from neuromask.models import build_model
from neuromask.studies.estimate import peak_mb, reset_peak
from neuromask.studies.estimate import timed as time_per_call


def timed(device: torch.device, work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Seconds per call of ``work`` (after one warm-up call) and the peak GPU memory in MB
    (NaN on the CPU), measured as `neuromask study --plan` calibrates."""
    reset_peak(device)
    seconds = time_per_call(work, device, repeats)
    return seconds, peak_mb(device) if device.type == "cuda" else float("nan")


def training_rows(device, shape, batch, repeats):
    rows = []
    for name in ("paper", "conv5_fc3"):
        model = build_model(name, shape).to(device).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch, 1, *shape, device=device)
        y = torch.randint(0, 2, (batch,), device=device)
        for amp in (False, True):

            def step(model=model, optimiser=optimiser, x=x, y=y, amp=amp) -> None:
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimiser.step()

            seconds, peak = timed(device, step, repeats)
            rows.append({"check": f"train {name}", "setting": "bf16 AMP" if amp else "fp32",
                         "value": batch / seconds, "unit": "images/s", "peak_MB": peak})  # fmt: skip
    return rows


def frozen_paper_cnn(device, shape):
    model = build_model("paper", shape).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def mask_rows(device, shape, repeats):
    model = frozen_paper_cnn(device, shape)
    rows = []
    for batch in (1, 8):
        x = torch.rand(batch, 1, *shape, device=device)

        def floor(x=x) -> None:
            leaf = x.clone().requires_grad_(True)
            torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)

        config = dataclasses.replace(mask_preset("group"), reference="constant",
                                     batch_size=batch, max_epochs=1, patience=1)  # fmt: skip
        explainer = MeaningfulPerturbation(model, config, device=device, progress=False)

        def mask_epoch(x=x, explainer=explainer) -> None:
            explainer.attribute(x, 1, mode="group")

        floor_s, floor_peak = timed(device, floor, repeats)
        step_s, step_peak = timed(device, mask_epoch, repeats)
        rows.append({"check": "group-mask step / floor", "setting": f"batch {batch}",
                     "value": step_s / floor_s, "unit": "ratio", "peak_MB": step_peak})  # fmt: skip
    return rows


def session_rows(device, shape, n_masks):
    model = frozen_paper_cnn(device, shape)
    x = torch.rand(n_masks, 1, *shape, device=device)
    rates = {}
    rows = []
    for batch in (1, n_masks):
        config = dataclasses.replace(mask_preset("session"), reference="constant",
                                     batch_size=batch, max_epochs=3, patience=3)  # fmt: skip
        explainer = MeaningfulPerturbation(model, config, device=device, progress=False)
        seconds, peak = timed(device, lambda e=explainer: e.attribute(x, 1, mode="session"), 1)
        rates[batch] = n_masks / seconds
        rows.append({"check": "session masks", "setting": f"{batch} at once",
                     "value": rates[batch], "unit": "masks/s", "peak_MB": peak})  # fmt: skip
    rows.append({"check": "session masks", "setting": f"{n_masks} at once / one by one",
                 "value": rates[n_masks] / rates[1], "unit": "ratio", "peak_MB": float("nan")})  # fmt: skip
    # --batch-size auto: as many as the free memory holds (1 on the CPU), on 4 times the
    # images so that a large batch can show
    many = x.repeat(4, 1, 1, 1, 1)
    config = dataclasses.replace(mask_preset("session"), reference="constant",
                                 batch_size=0, max_epochs=3, patience=3)  # fmt: skip
    explainer = MeaningfulPerturbation(model, config, device=device, progress=False)
    chosen = []
    seconds, peak = timed(
        device, lambda: chosen.append(explainer.attribute(many, 1, mode="session")[1]), 1
    )
    batch = chosen[-1].config.batch_size
    rows.append({"check": "session masks", "setting": f"auto ({batch} at once) / one by one",
                 "value": len(many) / seconds / rates[1], "unit": "ratio", "peak_MB": peak})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    shape = clinica_grid(6.0 if args.smoke else 1.5).shape
    batch, repeats, n_masks = (2, 1, 2) if args.smoke else (8, 5, 8)
    rows = training_rows(device, shape, batch, repeats)
    rows += mask_rows(device, shape, repeats)
    rows += session_rows(device, shape, n_masks)
    table = pd.DataFrame(rows)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"neuromask GPU check on {name}, grid {shape}{' (smoke)' if args.smoke else ''}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out is not None:
        table.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
