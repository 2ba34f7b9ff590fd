"""What glibc's handling of large blocks costs CPU work, and what
``neuromask.runtime.tune_allocator`` (applied by the ``neuromask`` command) saves.

Usage: python benchmarks/bench_allocator.py [--steps 6] [--grids 3,1.5]

Times the same work (conv5_fc3, random weights and images) in fresh processes side by
side in one run: with glibc's defaults, tuned with the heap trimmed above 1 GiB free
(the setting before round 19) and tuned as now (never trimmed). On each grid (3 mm:
61 x 73 x 61; 1.5 mm: 121 x 145 x 121) it measures a training step of 8 images, the
inference of 8 images masked by one mask in one batch (``batched_logits``, as a group
mask's validation runs) and an epoch of a group mask
over 8 images in mini-batches of 1 (the defaults), and prints seconds per step and the
ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from neuromask.runtime import NEVER_TRIM

MODES = {"glibc defaults": None, "trim above 1 GiB": 2**30, "never trim": NEVER_TRIM}

CHILD = r"""
import json, sys, time
import torch
threshold = sys.argv[1]
if threshold != "none":
    from neuromask.runtime import tune_allocator
    assert tune_allocator(int(threshold))
from neuromask.models.registry import build_model
from neuromask.models.inference import batched_logits
from neuromask.explain import MeaningfulPerturbation, mask_preset
steps, grid = int(sys.argv[2]), tuple(int(n) for n in sys.argv[3].split(","))
torch.manual_seed(0)
model = build_model("conv5_fc3", grid)
opt = torch.optim.Adam(model.parameters(), 1e-4)
x = torch.rand(8, 1, *grid)
y = torch.randint(0, 2, (8,))
def train_step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
mask = torch.rand(1, 1, *grid)
def inference():
    for _ in batched_logits(model, x, mask, batch_size=8):
        pass
def timed(step):
    step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - tic) / steps
out = {}
out["training step, 8 images"] = timed(train_step)
model.eval()
out["masked inference, 8 images"] = timed(inference)
explainer = MeaningfulPerturbation(model, mask_preset("group-mu", max_epochs=steps + 1,
                                   batch_size=1, patience=10**6))
explainer.progress = False
tic = time.perf_counter()
explainer.attribute(x, 1, mode="group")
out["group-mask epoch, 8 images"] = (time.perf_counter() - tic) / (steps + 1)
print(json.dumps(out))
"""

GRIDS = {"3": "61,73,61", "1.5": "121,145,121"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--grids", default="3,1.5")
    args = parser.parse_args()
    for name in args.grids.split(","):
        results = {}
        for mode, threshold in MODES.items():
            env = {**os.environ, "NEUROMASK_ALLOCATOR": ""}
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(threshold).lower(), str(args.steps), GRIDS[name]],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\n{name} mm grid ({GRIDS[name]}), seconds per step:")
        print(f"{'':<28}" + "".join(f"{m:>18}" for m in MODES) + "   old/new  glibc/new")
        for kind in results["never trim"]:
            row = [results[m][kind] for m in MODES]
            print(
                f"{kind:<28}"
                + "".join(f"{v:>18.3f}" for v in row)
                + f"   {row[1] / row[2]:>6.2f}x  {row[0] / row[2]:>8.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
