"""What glibc's handling of large blocks costs a training step, and what
``neuromask.runtime.tune_allocator`` (applied by the ``neuromask`` command) saves.

Usage: python benchmarks/bench_allocator.py [--steps 8] [--batch 8]

Times the same training step (conv5_fc3 on the 3 mm grid) and a group-mask step in two
fresh processes, one with glibc's defaults and one tuned, side by side in one run, and
prints seconds per step, user and system CPU time, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
tuned = sys.argv[1] == "tuned"
if tuned:
    from neuromask.runtime import tune_allocator
    assert tune_allocator()
from neuromask.models.registry import build_model
from neuromask.explain import MeaningfulPerturbation, mask_preset
steps, batch = int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = build_model("conv5_fc3", (61, 73, 61))
opt = torch.optim.Adam(model.parameters(), 1e-4)
x = torch.rand(batch, 1, 61, 73, 61)
y = torch.randint(0, 2, (batch,))
def train_step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
def timed(step):
    step(); step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return {"s_per_step": (t1 - t0) / steps, "user_s": r1.ru_utime - r0.ru_utime,
            "sys_s": r1.ru_stime - r0.ru_stime}
out = {"train": timed(train_step)}
model.eval()
explainer = MeaningfulPerturbation(model, mask_preset("group-mu", max_epochs=steps + 2,
                                   batch_size=batch, patience=10**6))
tic = time.perf_counter()
explainer.attribute(x, 1, mode="group")
out["mask_epoch"] = {"s_per_step": (time.perf_counter() - tic) / (steps + 2)}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    results = {}
    for mode in ("default", "tuned"):
        env = {**os.environ, "NEUROMASK_ALLOCATOR": "" if mode == "tuned" else "default"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(args.steps), str(args.batch)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("train", "mask_epoch"):
        d, t = results["default"][kind], results["tuned"][kind]
        extra = ""
        if "sys_s" in d:
            extra = (
                f"  (system CPU {d['sys_s']:.1f} s vs {t['sys_s']:.1f} s, user "
                f"{d['user_s']:.1f} s vs {t['user_s']:.1f} s)"
            )
        print(
            f"{kind:<11} default {d['s_per_step']:.3f} s/step, tuned {t['s_per_step']:.3f} "
            f"s/step: {d['s_per_step'] / t['s_per_step']:.2f}x{extra}"
        )


if __name__ == "__main__":
    main()
