"""Fault injection: each long command is killed (SIGKILL) at a checkpoint drawn at random,
then run again; the rerun must give the uninterrupted result.

Bit-identical where the README promises it (session masks one at a time, studies'
models and masks); within a stated tolerance for the sanity table, whose maps come from
Captum and mask optimisation and whose cost columns are wall-clock measurements.
``train`` and ``mask group`` have their own kill tests (test_train_cli.py,
test_mask_cli.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import study_toml

pytestmark = pytest.mark.slow
#: The checkpoints at which each command is killed are drawn from this seed.
SEED = 20261128
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "neuromask", *(str(a) for a in args)]


def run_killed(args: list[str], done: Callable[[], int], at: int, timeout: float = 600) -> None:
    """Start ``args``, kill it once ``done()`` reaches ``at``, then run it again to the end."""
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while done() < at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the command ended before checkpoint {at}: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(args, env=ENV, check=True, timeout=timeout, capture_output=True)


def volume(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_killed_session_masks_resume_to_the_same_masks(tiny_model, tiny_training, tmp_path):
    t = tiny_training
    config = tmp_path / "session.toml"
    config.write_text('max_epochs = 30\npatience = 30\nscore = "probability"\nbatch_size = 1\n')
    args = ["mask", "session", tiny_model, t["caps"], t["split"] / "train_val.tsv"]
    subprocess.run(
        command(*args, tmp_path / "straight", "--config", config, "-q"),
        env=ENV,
        check=True,
        timeout=600,
    )
    straight = pd.read_csv(tmp_path / "straight" / "index.tsv", sep="\t")
    at = int(np.random.default_rng(SEED).integers(1, len(straight)))
    records = tmp_path / "killed" / "records"
    run_killed(
        command(*args, tmp_path / "killed", "--config", config, "-q"),
        lambda: len(list(records.glob("*.json"))) if records.is_dir() else 0,
        at,
    )
    killed = pd.read_csv(tmp_path / "killed" / "index.tsv", sep="\t")
    pd.testing.assert_frame_equal(straight, killed)
    for name in straight["mask_file"]:
        a, b = (
            (tmp_path / "straight" / name).read_bytes(),
            (tmp_path / "killed" / name).read_bytes(),
        )
        assert a == b, name


def test_killed_sanity_resumes_to_the_same_table(tiny_model, tiny_cohort, tmp_path):
    pytest.importorskip("captum")
    short = tmp_path / "mask.toml"
    short.write_text("refine_epochs = 2\n")  # the fine stage of each area: 10 epochs otherwise
    args = [
        "sanity",
        tiny_model,
        None,
        "--truth",
        tiny_cohort.ground_truth,
        "--methods",
        "mask,saliency",
        "--images",
        "2",
        "--mask-epochs",
        "3",
        "--mask-config",
        short,
        "--session-epochs",
        "5",
        "--shuffled-epochs",
        "2",
        "-q",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(
        command(*[straight if a is None else a for a in args]), env=ENV, check=True, timeout=600
    )
    maps = sorted(p.relative_to(straight) for p in (straight / "maps").rglob("*.json"))
    at = int(np.random.default_rng(SEED + 1).integers(1, len(maps)))
    run_killed(
        command(*[killed if a is None else a for a in args]),
        lambda: len(list((killed / "maps").rglob("*.json"))) if killed.is_dir() else 0,
        at,
    )
    cost = ["seconds", "peak_memory_mb"]  # wall-clock measurements
    a = pd.read_csv(straight / "explainers.tsv", sep="\t").drop(columns=cost)
    b = pd.read_csv(killed / "explainers.tsv", sep="\t").drop(columns=cost)
    pd.testing.assert_frame_equal(a, b, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(
        pd.read_csv(straight / "cascade.tsv", sep="\t"),
        pd.read_csv(killed / "cascade.tsv", sep="\t"),
        rtol=1e-6,
        atol=1e-9,
    )
    for meta in maps:
        nifti = meta.with_suffix(".nii.gz")
        np.testing.assert_allclose(
            volume(straight / nifti), volume(killed / nifti), rtol=1e-5, atol=1e-7
        )


def test_killed_study_resumes_to_the_uninterrupted_study(finished_study, tiny_training, tmp_path):
    config = study_toml(tiny_training, tmp_path / "study.toml")
    out = tmp_path / "out"
    events = ["models/split-*/run-0/validation_metrics.json", "masks/*/*/*/*/mask.nii.gz"]

    def finished() -> int:
        return sum(len(list(out.glob(pattern))) for pattern in events)

    at = int(np.random.default_rng(SEED + 2).integers(1, 6))  # 2 trainings and 4 masks
    run_killed(command("study", "group", "--config", config, "--out", out, "-q"), finished, at)
    reference = finished_study["out"]
    for path in sorted((out / "models").rglob("model.safetensors")):
        rel = path.relative_to(out)
        assert path.read_bytes() == (reference / rel).read_bytes(), rel
    masks = sorted((out / "masks").rglob("mask_raw.nii.gz"))
    assert len(masks) == 4
    for path in masks:
        rel = path.relative_to(out)
        np.testing.assert_array_equal(volume(path), volume(reference / rel))
    a = pd.read_csv(out / "group" / "top_rois.tsv", sep="\t").drop(columns="mask_file")
    b = pd.read_csv(reference / "group" / "top_rois.tsv", sep="\t").drop(columns="mask_file")
    pd.testing.assert_frame_equal(a, b)
