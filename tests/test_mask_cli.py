"""``neuromask mask group`` and ``neuromask mask session`` on the tiny cohort."""

import json
import os
import signal
import subprocess
import sys
import time

import click
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.explain import MaskConfig
from neuromask.explain.extremal import next_stage
from neuromask.io.grid import clinica_grid


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    path = tmp_path_factory.mktemp("mask_settings")
    (path / "group.toml").write_text(
        'max_epochs = 4\npatience = 4\nlambda1 = 0.00001\nlambda2 = 0.00001\nscore = "probability"\n'
    )
    (path / "session.toml").write_text(
        'max_epochs = 40\npatience = 40\nlambda1 = 0.00001\nlambda2 = 0.00001\nscore = "probability"\n'
    )
    return path


def test_group_mask_outputs(tiny_model, tiny_training, settings, tmp_path):
    t = tiny_training
    out = tmp_path / "group"
    code, output = run(
        "mask",
        "group",
        tiny_model,
        t["caps"],
        t["split"] / "split-0" / "train.tsv",
        out,
        "--config",
        settings / "group.toml",
        "--quiet",
    )
    assert code == 0, output
    img = nib.load(out / "mask.nii.gz")
    np.testing.assert_array_equal(img.affine, clinica_grid(6.0).affine)
    mask = np.asarray(img.dataobj)
    raw = np.asarray(nib.load(out / "mask_raw.nii.gz").dataobj)
    # the defaults refine the coarse mask: below 0.95 the fine mask; where it keeps a
    # voxel, 1 % of the coarse mask's depth (values in [0.99, 1]) and up to 1 % more
    # from the halo (values in [0.98, 1]), in both files
    assert mask.min() >= 0 and mask.max() <= 1 and not ((mask > 0.95) & (mask < 0.98)).any()
    np.testing.assert_array_equal(mask, raw)
    history = pd.read_csv(out / "history.tsv", sep="\t")
    result = json.loads((out / "result.json").read_text())
    # the tiny CNN is not fooled at 2 %: the defaults try 3, 4 and 6 % too (skipping the
    # next area after one that leaves P(AD) at 0.1 or more), each area with both
    # stages, and the last area's masked P(AD) is the one reported
    tried = result["areas_tried"]
    ladder, stage = MaskConfig(), 0
    for row in tried:
        assert row["area"] == ladder.areas[stage]
        stage = next_stage(ladder, stage, row["p_masked"])
    assert len(tried) >= 2 and tried[0]["p_masked"] >= 0.1 and tried[1]["area"] == 0.04
    assert all(row["p_masked"] >= 0.05 for row in tried[:-1])
    # (judged before the halo and the trace, which move P(AD) a little)
    assert result["validation_mean_p_ad_masked"] == pytest.approx(tried[-1]["p_masked"], abs=1e-3)
    for area, rows in history.groupby("area", sort=False):
        stages = rows["stage"].value_counts()
        assert stages["coarse"] == 4 and 1 <= stages["fine"] <= 10, area
    assert history["area"].unique().tolist() == [row["area"] for row in tried]
    for column in (
        "train_total",
        "train_size",
        "train_smoothness",
        "train_score",
        "validation_total",
        "validation_probability",
        "fraction_below_keep",
    ):
        assert column in history.columns
    selection = pd.read_csv(out / "selection.tsv", sep="\t")
    train = pd.read_csv(t["split"] / "split-0" / "train.tsv", sep="\t")
    used = selection[selection["used_for"] == "training"]
    assert len(used) == (train["diagnosis"] == "AD").sum()  # every AD session, with its P(AD)
    assert ((used["p_ad"] >= 0.5) == used["correct"]).all()
    losses = pd.read_csv(out / "image_losses.tsv", sep="\t")
    assert len(losses) == used["correct"].sum() and {"loss_contribution", "flagged"} <= set(
        losses.columns
    )
    assert result["mask"]["max_epochs"] == 4 and result["n_validation"] > 0
    assert not list(out.glob("checkpoint*.pt"))  # the fine stage's checkpoint too
    top = pd.read_csv(out / "top_rois.tsv", sep="\t")
    assert top["rank"].tolist() == [1, 2, 3, 4, 5] and top["density"].is_monotonic_decreasing
    assert (out / "mask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("mask.json", "mask_raw.json"):  # each map says what made it
        sidecar = json.loads((out / name).read_text())
        assert (
            sidecar["Job"]["mask"]["max_epochs"] == 4 and sidecar["Model"]["Source"] == "neuromask"
        )
        assert sidecar["GeneratedBy"][0]["Name"] == "neuromask" and sidecar["Sources"]


def test_coarse_group_mask_is_thresholded(tiny_model, tiny_training, settings, tmp_path):
    """--preset group-coarse (no fine stage): mask.nii.gz is the raw mask with every value
    above 0.95 set to 1."""
    t = tiny_training
    out = tmp_path / "coarse"
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv", out,
        "--preset", "group-coarse", "--config", settings / "group.toml", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    mask = np.asarray(nib.load(out / "mask.nii.gz").dataobj)
    raw = np.asarray(nib.load(out / "mask_raw.nii.gz").dataobj)
    assert not ((mask > 0.95) & (mask < 1)).any()
    np.testing.assert_array_equal(mask, np.where(raw > 0.95, 1, raw))
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert len(history) == 4 and "stage" not in history


def test_group_mask_with_a_growing_area(tiny_model, tiny_training, tmp_path):
    """--preset group-sufficient: the areas tried are recorded, the history says which
    area each epoch belongs to, and no checkpoint is left behind."""
    t = tiny_training
    out = tmp_path / "sufficient"
    config = tmp_path / "sufficient.toml"
    config.write_text("max_epochs = 2\npatience = 2\nfooled_below = 0.000001\n")
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv", out,
        "--preset", "group-sufficient", "--config", config, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads((out / "result.json").read_text())
    assert [row["area"] for row in result["areas_tried"]] == [0.02, 0.04, 0.08]
    assert result["mask"]["larger_areas"] == [0.04, 0.08]
    assert result["validation_mean_p_ad_masked"] == pytest.approx(
        result["areas_tried"][-1]["p_masked"], abs=1e-6
    )
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["area"].tolist() == [0.02, 0.02, 0.04, 0.04, 0.08, 0.08]
    # the summary names each area with its masked P(AD)
    steps = ", ".join(f"{a} % (P(AD) {row['p_masked']:.3f})" for a, row in
                      zip((2, 4, 8), result["areas_tried"], strict=True))  # fmt: skip
    assert f"so it grew (mask setting larger_areas): {steps}." in " ".join(output.split())
    assert not list(out.glob("checkpoint*"))


def test_group_fast_preset_runs_and_is_recorded(tiny_model, tiny_training, tmp_path):
    """--preset group-fast: the CNN in bfloat16, the preset's epochs, all in result.json."""
    t = tiny_training
    out, config = tmp_path / "fast", tmp_path / "one-area.toml"
    config.write_text("larger_areas = []\n")  # the first area alone, to keep the test short
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv", out,
        "--preset", "group-fast", "--config", config, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    recorded = json.loads((out / "result.json").read_text())["mask"]
    assert (recorded["precision"], recorded["max_epochs"], recorded["refine_epochs"]) == (
        "bfloat16",
        12,
        6,
    )
    assert recorded["larger_area_epochs"] == 6
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert 0 < len(history) <= 12 + 6


@pytest.mark.slow
def test_killed_group_mask_resumes_to_the_same_mask(tiny_model, tiny_training, settings, tmp_path):
    t = tiny_training
    config = tmp_path / "long.toml"
    config.write_text(
        'max_epochs = 8\npatience = 8\nlambda1 = 0.00001\nlambda2 = 0.00001\nscore = "probability"\nbatch_size = 2\n'
        "refine_epochs = 3\n"  # the fine stage too, at each area; 51 s with its default 10
    )
    args = [str(tiny_model), str(t["caps"]), str(t["split"] / "split-0" / "train.tsv")]
    base = [sys.executable, "-m", "neuromask", "mask", "group", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [*base, str(tmp_path / "straight"), "--config", str(config), "--quiet"],
        check=True,
        env=env,
        timeout=600,
    )
    proc = subprocess.Popen(
        [*base, str(tmp_path / "killed"), "--config", str(config), "--quiet"], env=env
    )
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "mask.nii.gz").exists()
    subprocess.run(
        [*base, str(tmp_path / "killed"), "--config", str(config), "--quiet"],
        check=True,
        env=env,
        timeout=600,
    )
    a = np.asarray(nib.load(tmp_path / "straight" / "mask_raw.nii.gz").dataobj)
    b = np.asarray(nib.load(tmp_path / "killed" / "mask_raw.nii.gz").dataobj)
    np.testing.assert_array_equal(a, b)


def test_session_masks_and_rerun(tiny_model, tiny_training, settings, tmp_path):
    t = tiny_training
    out = tmp_path / "sessions"
    tsv = t["split"] / "train_val.tsv"
    code, output = run(
        "mask",
        "session",
        tiny_model,
        t["caps"],
        tsv,
        out,
        "--config",
        settings / "session.toml",
        "--batch-size",
        4,
        "--quiet",
    )
    assert code == 0, output
    index = pd.read_csv(out / "index.tsv", sep="\t")
    assert {
        "participant_id",
        "session_id",
        "final_loss",
        "epochs",
        "p_ad_before",
        "p_ad_after",
    } <= set(index.columns)
    assert (index["epochs"] <= 40).all() and len(index) > 0
    assert (index["p_ad_after"] < index["p_ad_before"]).mean() > 0.5
    for name, p, s in zip(
        index["mask_file"], index["participant_id"], index["session_id"], strict=True
    ):
        assert name == f"{p}_{s}_mask.nii.gz"
        img = nib.load(out / name)
        assert img.shape == clinica_grid(6.0).shape
        np.testing.assert_array_equal(img.affine, clinica_grid(6.0).affine)
        sidecar = json.loads((out / name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Sources"][0].endswith(
            f"{p}_{s}_T1w_segm-graymatter_space-Ixi549Space_modulated-off_probability.nii.gz"
        )
        assert sidecar["Job"]["mask"]["max_epochs"] == 40 and sidecar["PADAfter"] < 1
    code, output = run(
        "mask",
        "session",
        tiny_model,
        t["caps"],
        tsv,
        out,
        "--config",
        settings / "session.toml",
        "--batch-size",
        4,
    )
    assert code == 0 and f"{len(index)} kept from an earlier run" in output


def test_session_masks_under_the_area_constraint(tiny_model, tiny_training, tmp_path):
    """``--preset session-area`` masks each session with the group defaults' area
    constraint and healthy reference: the job records them, and each mask restores
    about 2 % of the brain (the constraint is a penalty, so not exactly)."""
    t = tiny_training
    short = tmp_path / "short.toml"
    short.write_text("max_epochs = 8\n")
    out = tmp_path / "area"
    code, output = run(
        "mask", "session", tiny_model, t["caps"], t["split"] / "test.tsv", out,
        "--preset", "session-area", "--config", short, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    index = pd.read_csv(out / "index.tsv", sep="\t")
    assert len(index) > 0 and (index["epochs"] <= 8).all()
    for name in index["mask_file"]:
        job = json.loads((out / name.replace(".nii.gz", ".json")).read_text())["Job"]["mask"]
        assert (job["area"], job["upsample"], job["reference"]) == (0.02, 2, "healthy")
        m = np.asarray(nib.load(out / name).dataobj)
        assert 0 < (m < 0.5).mean() < 0.1  # a region, neither nothing nor the brain
    # masks that barely perturb (one epoch, 0.1 %) leave the CNN unfooled, and it says so
    weak = tmp_path / "weak.toml"
    weak.write_text("max_epochs = 1\narea = 0.001\n")
    code, output = run(
        "mask", "session", tiny_model, t["caps"], t["split"] / "test.tsv", tmp_path / "weak",
        "--preset", "session-area", "--config", weak,
    )  # fmt: skip
    assert code == 0, output
    unfooled = (pd.read_csv(tmp_path / "weak" / "index.tsv", sep="\t")["p_ad_after"] >= 0.5).sum()
    assert unfooled > 0
    assert f"{unfooled} of {len(index)} session masks did not fool the CNN" in " ".join(
        output.split()
    )


def test_mask_errors(tiny_model, tiny_training, settings, tmp_path):
    t = tiny_training
    train = pd.read_csv(t["split"] / "split-0" / "train.tsv", sep="\t")
    cn = tmp_path / "cn.tsv"
    train[train["diagnosis"] == "CN"].to_csv(cn, sep="\t", index=False)
    code, output = run("mask", "group", tiny_model, t["caps"], cn, tmp_path / "o1")
    assert code == 1 and "holds no AD session" in output and "Traceback" not in output
    bad = tmp_path / "bad.toml"
    bad.write_text("beta1 = 0.0\n")
    code, output = run(
        "mask",
        "group",
        tiny_model,
        t["caps"],
        t["split"] / "split-0" / "train.tsv",
        tmp_path / "o2",
        "--config",
        bad,
    )
    assert code == 1 and "beta1 must be > 0" in output
    bad.write_text("lambda2 = -1.0\n")
    code, output = run(
        "mask",
        "session",
        tiny_model,
        t["caps"],
        t["split"] / "test.tsv",
        tmp_path / "o3",
        "--config",
        bad,
    )
    assert code == 1 and "lambda2 must be >= 0" in output
    other = tmp_path / "other"
    other.mkdir()
    (other / "result.txt").write_text("someone else's")
    code, output = run(
        "mask",
        "group",
        tiny_model,
        t["caps"],
        t["split"] / "split-0" / "train.tsv",
        other,
        "--config",
        settings / "group.toml",
    )
    assert code == 1 and "already holds other results" in output


def test_no_correctly_classified_ad_session(tiny_cohort, tiny_training):
    import torch
    from torch import nn

    from neuromask.jobs.trained_model import NoSessionToMaskError, load_ad_sessions

    class AlwaysCN(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([2.0, -2.0]))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 2)

    model = AlwaysCN()
    record = {"train": {"normalization": "none"}, "grid": clinica_grid(6.0).to_dict()}
    tsv = tiny_training["split"] / "test.tsv"
    with pytest.raises(
        NoSessionToMaskError, match=r"None of the 2 AD sessions of .*test\.tsv is classified as AD"
    ):
        load_ad_sessions(model, record, tiny_cohort.caps, tsv, progress=False)


def test_data_on_another_grid_than_the_model(tiny_model, tiny_training, tmp_path):
    from neuromask.io.caps import gm_map_path
    from neuromask.io.grid import Grid
    from neuromask.io.nifti import load_volume, save_volume

    t = tiny_training
    test = pd.read_csv(t["split"] / "test.tsv", sep="\t")
    caps = tmp_path / "caps"
    for p, s in zip(test["participant_id"], test["session_id"], strict=True):
        data, grid = load_volume(gm_map_path(t["caps"], p, s))
        shifted = grid.affine.copy()
        shifted[:3, 3] += 3.0
        save_volume(gm_map_path(caps, p, s), data, Grid(grid.shape, shifted))
    code, output = run("mask", "session", tiny_model, caps, t["split"] / "test.tsv", tmp_path / "o")
    assert code == 1 and "different voxel grid" in output and "Traceback" not in output


def test_group_mask_with_the_cn_reference_writes_it(tiny_model, tiny_training, tmp_path):
    t = tiny_training
    config = tmp_path / "cn.toml"
    config.write_text('max_epochs = 2\nreference = "cn_mean"\nupsample = 2\n')
    out = tmp_path / "cn"
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv", out,
        "--config", config, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    ref = nib.load(out / "reference.nii.gz")
    np.testing.assert_array_equal(ref.affine, clinica_grid(6.0).affine)
    train = pd.read_csv(t["split"] / "split-0" / "train.tsv", sep="\t")
    cn = train[train["diagnosis"] == "CN"]
    first = nib.load(
        next((t["caps"] / "subjects" / cn["participant_id"].iloc[0]).rglob("*.nii.gz"))
    )
    assert ref.shape == first.shape
    result = json.loads((out / "result.json").read_text())
    assert result["mask"]["reference"] == "cn_mean" and result["mask"]["upsample"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('reference = "median"\n')
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv",
        tmp_path / "bad", "--config", bad, "--quiet",
    )  # fmt: skip
    assert code == 1 and "reference" in output and "Traceback" not in output


def test_group_mask_with_the_healthy_reference(tiny_model, tiny_training, tmp_path):
    """``reference = "healthy"`` through the command line: the CN training sessions are
    loaded, the job runs, and its settings say which reference filled the mask."""
    t = tiny_training
    config = tmp_path / "healthy.toml"
    config.write_text('max_epochs = 2\nreference = "healthy"\narea = 0.02\n')
    out = tmp_path / "healthy"
    code, output = run(
        "mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv", out,
        "--config", config, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads((out / "result.json").read_text())
    assert result["mask"]["reference"] == "healthy" and result["mask"]["area"] == 0.02
    assert nib.load(out / "mask.nii.gz").shape == clinica_grid(6.0).shape
    assert not (out / "reference.nii.gz").exists()  # the reference differs per image


def test_group_mask_says_when_it_did_not_fool_the_cnn(monkeypatch, tmp_path):
    """A mask that leaves the validation P(AD) at 0.5 or more is reported as such, with
    the settings that perturb more."""
    import neuromask.jobs.masks as jobs
    from neuromask.jobs.masks import GroupMaskOutputs

    def fake_job(model_dir, caps, tsv, out, config, **_):
        out.mkdir(parents=True)
        pd.DataFrame({"rank": [1], "roi": ["Hippocampus_L"], "density": [0.5]}).to_csv(
            out / "top_rois.tsv", sep="\t", index=False
        )
        history = pd.DataFrame({"epoch": [0, 1]})
        return GroupMaskOutputs(out, np.ones((2, 2, 2)), history, 5, 3, p_ad)

    monkeypatch.setattr(jobs, "group_mask_job", fake_job)
    for p_ad, warned in ((0.8, True), (0.1, False)):
        out = tmp_path / f"p{p_ad}"
        code, output = run("mask", "group", tmp_path, tmp_path, tmp_path / "t.tsv", out)
        assert code == 0, output
        assert ("did not fool the CNN" in output) is warned
        text = " ".join(output.split())
        assert ("larger areas (mask setting larger_areas" in text) is warned


def test_config_help_names_every_mask_setting():
    """``--config``'s help lists the settings a TOML file may hold: all of them."""
    import dataclasses

    from neuromask.cli.mask_commands import _COMMON
    from neuromask.explain import MaskConfig

    @click.command()
    def command() -> None: ...

    for option in _COMMON:
        command = option(command)
    (config,) = [p for p in command.params if p.name == "config_path"]
    missing = [f.name for f in dataclasses.fields(MaskConfig) if f.name not in config.help]
    assert missing == []
