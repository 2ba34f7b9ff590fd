"""The paper's grid on the CPU, measured directly: an epoch, a group-mask epoch, a session
mask, and what is left to gain beyond the allocator tuning, side by side in one run.

Usage: python benchmarks/full_grid_cpu.py OUT [--subjects 20] [--train-epochs 8]
           [--session-epochs 200]

Through the command line, as a user would, on a synthetic cohort on the Clinica grid
(1.5 mm, 121 x 145 x 121, one session per subject):

1. ``neuromask train`` of the ``paper`` CNN for ``--train-epochs`` epochs (the mean
   epoch time from ``training.tsv``), so that it classifies some AD sessions;
2. a group-mask epoch with the defaults' coarse stage over the split's training AD
   sessions (validation on its validation AD sessions): a run of two epochs minus a run
   of one, through the library (a CNN trained this briefly may call every AD session CN,
   which ``neuromask mask group`` refuses; the steps cost the same either way);
3. a session mask (preset ``session``) on one session, capped at ``--session-epochs``
   steps (the preset's patience alone is 200 steps).

Then, side by side on the same frozen ``paper`` CNN:

- evaluation under ``torch.no_grad`` against ``torch.inference_mode``;
- a mask step's floor (forward and backward to the input, one image) eager against
  ``torch.compile`` (the compile time reported apart);
- a training step (batch 8) with 1 thread against 2;
- ``neuromask train`` (3 epochs) with glibc's allocator tuned after torch's import
  against before it, as the command now does.
"""

from __future__ import annotations

from neuromask.runtime import tune_allocator

tune_allocator()  # before torch is imported, as the command line does

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuromask.io.grid import clinica_grid
from neuromask.models import build_model
from neuromask.studies.estimate import timed

NEUROMASK = [sys.executable, "-m", "neuromask"]


def cli(*args: object) -> float:
    """Run one neuromask command; its wall time in seconds."""
    tic = time.perf_counter()
    subprocess.run([*NEUROMASK, *map(str, args)], check=True)
    return time.perf_counter() - tic


def commands(
    out: Path, subjects: int, session_epochs: int, train_epochs: int
) -> list[dict[str, object]]:
    """Steps 1-3 (skipped when their output is there: the script resumes)."""
    synth, qc, split, models = out / "synth", out / "qc", out / "split", out / "models"
    if not (qc / "pass.tsv").is_file():
        cli("synth", synth, "--voxel-size", 1.5, "--subjects-per-class", subjects,
            "--sessions", 1, 1, "--seed", 7, "-q")  # fmt: skip
        cli("qc", synth / "caps", synth / "participants.tsv", qc)
        cli("split", qc / "pass.tsv", split, "--folds", 2, "--test-subjects-per-class", 2)
    # a few epochs: their mean time is the figure
    (out / "train.toml").write_text(f'max_epochs = {train_epochs}\n\n[model]\npreset = "paper"\n')
    run = models / "split-0" / "run-0"
    rows = []
    seconds = cli("train", synth / "caps", split, models, "--split", 0,
                  "--config", out / "train.toml", "-q")  # fmt: skip
    history = pd.read_csv(run / "training.tsv", sep="\t")
    n_train = len(pd.read_csv(split / "split-0" / "train.tsv", sep="\t"))
    n_val = len(pd.read_csv(split / "split-0" / "validation.tsv", sep="\t"))
    epoch_s = float(history["time_s"].mean())
    rows.append({"work": f"training epoch, paper CNN ({n_train} sessions trained, {n_val} "
                         f"validated; mean of {len(history)} epochs)",
                 "seconds": epoch_s, "command_s": seconds,
                 "per_session_s": epoch_s / n_train})  # fmt: skip
    rows += mask_rows(run, synth / "caps", split / "split-0", session_epochs)
    return rows


def mask_rows(run: Path, caps: Path, split: Path, session_epochs: int) -> list[dict]:
    """A group-mask epoch (the defaults' coarse stage: a run of two epochs minus a run of
    one) and a session mask, through the library on the trained CNN. A CNN trained this
    briefly on so few sessions may call every AD session CN, which the mask commands
    refuse (nothing to mask); the steps cost the same either way, so every training and
    validation AD session is used here."""
    import dataclasses

    from neuromask.explain import MeaningfulPerturbation, mask_preset
    from neuromask.jobs.trained_model import TrainedModel, _sessions_of, brain_mask_of

    trained = TrainedModel.open(run, "cpu")
    ad = {}
    for name in ("train", "validation"):
        _, _, images = _sessions_of(
            trained.record, caps, split / f"{name}.tsv", "AD", "no AD session", None, False
        )
        ad[name] = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    brain = brain_mask_of(ad["train"][:, 0].numpy())
    healthy = trained.training_cn_sessions()
    spent = {}
    for epochs in (1, 2):
        # one area: with the ladder (round 15) a mask that does not fool this briefly
        # trained CNN is made again at larger areas, each with ``epochs`` epochs
        config = dataclasses.replace(
            mask_preset("group"), max_epochs=epochs, refine_epochs=0, larger_areas=()
        )
        explainer = MeaningfulPerturbation(
            trained.model, config, brain_mask=brain, reference=healthy
        )
        tic = time.perf_counter()
        explainer.attribute(ad["train"], 1, validation=ad["validation"])
        spent[epochs] = time.perf_counter() - tic
    n = len(ad["train"])
    epoch_s = spent[2] - spent[1]
    rows = [{"work": f"group-mask epoch, defaults' coarse stage ({n} AD sessions, "
                     f"{len(ad['validation'])} for validation)",
             "seconds": epoch_s, "per_session_s": epoch_s / n}]  # fmt: skip
    config = dataclasses.replace(mask_preset("session"), max_epochs=session_epochs)
    explainer = MeaningfulPerturbation(trained.model, config, brain_mask=brain)
    tic = time.perf_counter()
    _, result = explainer.attribute(ad["train"][:1], 1, mode="session")
    seconds = time.perf_counter() - tic
    steps = int(result.history["epochs"].iloc[0])
    rows.append({"work": f"session mask, preset session ({steps} steps)",
                 "seconds": seconds, "per_step_s": seconds / steps})  # fmt: skip
    return rows


def allocator_rows(out: Path, epochs: int = 3) -> list[dict[str, object]]:
    """``neuromask train`` of the paper CNN for ``epochs`` epochs, twice: with glibc's
    allocator tuned after torch is imported (as the command did before), and as the
    command does now, tuned before anything imports torch. Mean epoch time of each."""
    split, caps = out / "split", out / "synth" / "caps"
    config = out / "allocator.toml"
    config.write_text(f'max_epochs = {epochs}\n\n[model]\npreset = "paper"\n')
    after = (
        "import sys, torch; from neuromask.runtime import tune_allocator; tune_allocator(); "
        "from neuromask.cli.main import cli; cli(prog_name='neuromask')"
    )
    means = {}
    for name, command in (
        ("after", [sys.executable, "-c", after]),
        ("before", [sys.executable, "-m", "neuromask"]),
    ):
        models = out / f"allocator_{name}"
        if models.exists():
            import shutil

            shutil.rmtree(models)
        args = ["train", caps, split, models, "--split", 0, "--config", config, "-q"]
        subprocess.run([*command, *map(str, args)], check=True, stdout=subprocess.DEVNULL)
        history = pd.read_csv(models / "split-0" / "run-0" / "training.tsv", sep="\t")
        means[name] = float(history["time_s"].mean())
    return [{"work": f"training epoch, paper CNN: allocator tuned after torch's import vs "
                     f"before (mean of {epochs})",
             "seconds": means["after"], "other_s": means["before"],
             "ratio": means["after"] / means["before"]}]  # fmt: skip


def side_by_side(repeats: int) -> list[dict[str, object]]:
    shape = clinica_grid(1.5).shape
    model = build_model("paper", shape).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(4, 1, *shape)
    rows = []

    def no_grad() -> None:
        with torch.no_grad():
            model(x)

    def inference() -> None:
        with torch.inference_mode():
            model(x)

    a, b = timed(no_grad, x.device, repeats), timed(inference, x.device, repeats)
    rows.append({"work": "evaluation, 4 images: no_grad vs inference_mode",
                 "seconds": a, "other_s": b, "ratio": a / b})  # fmt: skip

    one = x[:1]

    def floor(net: torch.nn.Module) -> None:
        leaf = one.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(leaf)[:, 1].sum(), leaf)

    eager = timed(lambda: floor(model), x.device, repeats)
    tic = time.perf_counter()
    try:
        compiled = torch.compile(model)
        floor(compiled)
        compile_s = time.perf_counter() - tic
        fast = timed(lambda: floor(compiled), x.device, repeats)
        rows.append({"work": "mask-step floor, 1 image: eager vs torch.compile",
                     "seconds": eager, "other_s": fast, "ratio": eager / fast,
                     "compile_s": compile_s})  # fmt: skip
    except Exception as error:  # no compiler on this machine: say so, keep the rest
        rows.append({"work": f"torch.compile failed: {type(error).__name__}: {error}"[:200],
                     "seconds": eager})  # fmt: skip

    net = build_model("paper", shape).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    xb, yb = torch.rand(8, 1, *shape), torch.randint(0, 2, (8,))

    def train_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(xb), yb).backward()
        optimiser.step()

    threads = torch.get_num_threads()
    per = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        per[n] = timed(train_step, xb.device, max(1, repeats - 1))
    torch.set_num_threads(threads)
    rows.append({"work": "training step, batch 8: 1 thread vs 2",
                 "seconds": per[1], "other_s": per[2], "ratio": per[1] / per[2]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--session-epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-commands", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = (
        []
        if args.skip_commands
        else commands(args.out, args.subjects, args.session_epochs, args.train_epochs)
    )
    rows += side_by_side(args.repeats)
    if not args.skip_commands:
        rows += allocator_rows(args.out)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "full_grid_cpu.tsv", sep="\t", index=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
