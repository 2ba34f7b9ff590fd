"""``neuromask train``, ``evaluate`` and ``summary`` end to end on the tiny cohort."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from neuromask.cli.main import cli
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, save_volume


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tiny_training, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "models"
    t = tiny_training
    code, output = run(
        "train", t["caps"], t["split"], out, "--config", t["config"], "--runs", 2, "--quiet"
    )
    assert code == 0, output
    return out


def test_train_writes_every_split_and_run(trained):
    for k in (0, 1):
        for r in (0, 1):
            folder = trained / f"split-{k}" / f"run-{r}"
            assert (folder / "model.safetensors").is_file() and (folder / "training.tsv").is_file()
            record = json.loads((folder / "config.json").read_text())
            assert record["split"] == k and record["run"] == r
            assert record["train"]["max_epochs"] == 3 and record["grid"]["shape"] == [31, 37, 31]
    a = load_file(trained / "split-0" / "run-0" / "model.safetensors")
    b = load_file(trained / "split-0" / "run-1" / "model.safetensors")
    assert not torch.equal(a["features.0.weight"], b["features.0.weight"])  # runs differ by seed
    assert (trained / "train.json").is_file()


def test_rerun_skips_finished_runs(trained, tiny_training):
    t = tiny_training
    before = (trained / "split-0" / "run-0" / "model.safetensors").stat().st_mtime_ns
    code, output = run(
        "train",
        t["caps"],
        t["split"],
        trained,
        "--config",
        t["config"],
        "--runs",
        2,
        "--split",
        0,
        "--quiet",
    )
    assert code == 0 and output.count("skipped") == 2
    assert (trained / "split-0" / "run-0" / "model.safetensors").stat().st_mtime_ns == before


def test_evaluate_and_summary(trained, tiny_training):
    t = tiny_training
    model_dir = trained / "split-0" / "run-0"
    code, output = run(
        "evaluate", model_dir, t["caps"], t["split"] / "test.tsv", "--name", "test", "--quiet"
    )
    assert code == 0, output
    predictions = pd.read_csv(model_dir / "test" / "predictions.tsv", sep="\t")
    test = pd.read_csv(t["split"] / "test.tsv", sep="\t")
    assert predictions["participant_id"].tolist() == test["participant_id"].tolist()
    assert predictions["true_label"].tolist() == (test["diagnosis"] == "AD").astype(int).tolist()
    assert predictions["p_ad"].between(0, 1).all()
    metrics = json.loads((model_dir / "test" / "metrics.json").read_text())
    expected = (predictions["predicted_label"] == predictions["true_label"]).mean()
    assert metrics["accuracy"] == pytest.approx(expected)
    assert {"balanced_accuracy", "sensitivity", "specificity", "roc_auc"} <= set(metrics)
    code, output = run("evaluate", model_dir, t["caps"], t["split"] / "test.tsv", "--name", "test")
    assert code == 1 and "already exists" in output
    code, output = run("summary", trained, "--name", "test")
    assert code == 0, output
    summary = pd.read_csv(trained / "summary.tsv", sep="\t")
    assert summary["split"].tolist() == ["0", "0", "1", "1", "mean", "std"]
    runs = summary.iloc[:4]
    assert summary.loc[4, "validation"] == pytest.approx(runs["validation"].astype(float).mean())
    assert summary.loc[0, "test"] == pytest.approx(metrics["balanced_accuracy"])


def test_bad_config_split_and_model(trained, tiny_training, tmp_path):
    t = tiny_training
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 0.01\nepochs = 3\n")
    code, output = run("train", t["caps"], t["split"], tmp_path / "o", "--config", bad)
    assert code == 1 and "bad.toml: unknown key(s) epochs" in output and "Traceback" not in output
    code, output = run("train", t["caps"], t["split"], tmp_path / "o", "--split", 7)
    assert code == 1 and "lacks split-7/train.tsv" in output
    code, output = run("train", t["caps"], tmp_path, tmp_path / "o")
    assert code == 1 and "holds neither train_val.tsv" in output
    old = tmp_path / "old_model"
    old.mkdir()
    record = json.loads((trained / "split-0" / "run-0" / "config.json").read_text())
    (old / "config.json").write_text(
        json.dumps({**record, "format": 0, "neuromask_version": "0.0.1"})
    )
    code, output = run("evaluate", old, t["caps"], t["split"] / "test.tsv", "--name", "x")
    assert code == 1 and "written by neuromask 0.0.1 in format 0" in output


def test_data_on_another_grid_is_refused(trained, tiny_training, tmp_path):
    t = tiny_training
    test = pd.read_csv(t["split"] / "test.tsv", sep="\t")
    caps = tmp_path / "caps"
    for p, s in zip(test["participant_id"], test["session_id"], strict=True):
        data, grid = load_volume(gm_map_path(t["caps"], p, s))
        affine = grid.affine.copy()
        affine[0, 0], affine[0, 3] = -affine[0, 0], -affine[0, 3]  # LAS, same shape
        save_volume(gm_map_path(caps, p, s), data[::-1], Grid(grid.shape, affine))
    code, output = run(
        "evaluate", trained / "split-0" / "run-0", caps, t["split"] / "test.tsv", "--name", "las"
    )
    assert code == 1 and "different voxel grid" in output and "Traceback" not in output
    assert not (trained / "split-0" / "run-0" / "las").exists()


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tiny_training, tmp_path):
    t = tiny_training
    config = tmp_path / "long.toml"
    config.write_text(t["config"].read_text().replace("max_epochs = 3", "max_epochs = 6"))
    base = [sys.executable, "-m", "neuromask", "train", str(t["caps"]), str(t["split"])]
    tail = ["--config", str(config), "--split", "0", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*base, str(tmp_path / "straight"), *tail], check=True, env=env, timeout=600)

    proc = subprocess.Popen([*base, str(tmp_path / "killed"), *tail], env=env)
    checkpoint = tmp_path / "killed" / "split-0" / "run-0" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "split-0" / "run-0" / "validation_metrics.json").exists()
    subprocess.run([*base, str(tmp_path / "killed"), *tail], check=True, env=env, timeout=600)
    for name in ("model.safetensors", "model_best_loss.safetensors"):
        a = load_file(tmp_path / "straight" / "split-0" / "run-0" / name)
        b = load_file(tmp_path / "killed" / "split-0" / "run-0" / name)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    columns = ["epoch", "train_loss", "validation_loss", "validation_balanced_accuracy"]
    straight = pd.read_csv(tmp_path / "straight" / "split-0" / "run-0" / "training.tsv", sep="\t")[
        columns
    ]
    killed = pd.read_csv(tmp_path / "killed" / "split-0" / "run-0" / "training.tsv", sep="\t")[
        columns
    ]
    pd.testing.assert_frame_equal(straight, killed)
