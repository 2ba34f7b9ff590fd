"""``neuromask study NAME --plan``: every job listed by stage, the done ones marked, and a
calibrated estimate, without running anything."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from conftest import study_toml
from neuromask.cli.main import cli
from neuromask.studies.config import load_study_config
from neuromask.studies.estimate import Sizes, job_seconds, study_sizes


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_plan_lists_jobs_marks_done_ones_and_caches_its_calibration(tiny_training, tmp_path):
    config = study_toml(tiny_training, tmp_path / "study.toml", train_epochs=2)
    out = tmp_path / "out"
    code, output = run("study", "cnn", "--config", config, "--out", out, "--plan")
    assert code == 0, output
    text = " ".join(output.split())
    assert "train/split-0/run-0" in text and "evaluate/split-1/run-1/test" in text
    assert "Estimated wall time with 1 worker(s)" in text
    assert "tries up to 3 larger area(s)" in text  # the default ladder, not counted
    mask = load_study_config(config)[0].mask
    first = mask.max_epochs + mask.refine_epochs
    later = min(mask.larger_area_epochs or mask.max_epochs, mask.max_epochs) + mask.refine_epochs
    assert f"each of up to {later} epochs against the first area's {first}." in text
    assert not (out / "models").exists()  # nothing ran
    calibration = json.loads((out / "plan_calibration.json").read_text())["unit"]
    assert calibration["train_step"] > 0 and calibration["infer_image"] > 0
    # run the study, then plan again: every job is done, and the calibration is reused
    code, output = run("study", "cnn", "--config", config, "--out", out, "-q")
    assert code == 0, output
    stamp = (out / "plan_calibration.json").stat().st_mtime_ns
    code, output = run("study", "cnn", "--config", config, "--out", out, "--plan", "--workers", 2)
    assert code == 0, output
    text = " ".join(output.split())
    assert "complete" in output and "0.0 min" in text
    assert "they are counted as one" in text  # two workers on one CPU add no cores
    assert (out / "plan_calibration.json").stat().st_mtime_ns == stamp


def test_job_costs_count_their_units():
    config, _ = load_study_config("small")
    sizes = Sizes(train=40, validation=10, test=12, independent=45, independent_baseline=30,
                  sessions_for_masks=15, data_sessions=100)  # fmt: skip
    unit = {"train_step": 1.0, "infer_image": 0.1, "mask_step": 2.0, "session_step": 3.0,
            "data_session": 0.5}  # fmt: skip
    t = config.train
    expected = t.max_epochs * ((40 + t.batch_size - 1) // t.batch_size * 1.0 + 10 * 0.1)
    assert job_seconds("train", {}, config, sizes, unit) == pytest.approx(expected)
    assert job_seconds("evaluate", {"name": "test"}, config, sizes, unit) == pytest.approx(1.2)
    assert job_seconds("data", {}, config, sizes, unit) == pytest.approx(50.0)
    m = config.mask
    assert m.refine_epochs > 0  # the fine stage's epochs are counted too
    epochs = m.max_epochs + m.refine_epochs
    group = epochs * ((20 + m.batch_size - 1) // m.batch_size * 2.0 + 5 * 0.1)
    assert job_seconds("group_mask", {"cohort": "adni"}, config, sizes, unit) == pytest.approx(
        group
    )
    # a job's own settings decide its epochs: a grid point of the voxel-level mask has no
    # fine stage
    grid_point = {"cohort": "adni", "mask": {"max_epochs": 7, "upsample": 1, "area": 0.0}}
    point = 7 * ((20 + m.batch_size - 1) // m.batch_size * 2.0 + 5 * 0.1)
    assert job_seconds("group_mask", grid_point, config, sizes, unit) == pytest.approx(point)
    # a growing area counts its first area only (the plan says so)
    assert m.larger_areas == (0.03, 0.04, 0.06)
    one = dataclasses.replace(config, mask=dataclasses.replace(m, larger_areas=()))
    assert job_seconds("group_mask", {"cohort": "adni"}, one, sizes, unit) == pytest.approx(group)
    # a grid point of that study still runs one area (its own larger_areas, JSON's list)
    own = {"cohort": "adni", "mask": {**grid_point["mask"], "larger_areas": []}}
    assert job_seconds("group_mask", own, config, sizes, unit) == pytest.approx(point)
    s = config.session_mask
    sessions = (15 + s.batch_size - 1) // s.batch_size * s.max_epochs * 3.0
    assert job_seconds("sessions", {}, config, sizes, unit) == pytest.approx(sessions)
    # an automatic session batch (0) is counted one mask at a time
    auto = dataclasses.replace(config, session_mask=dataclasses.replace(s, batch_size=0))
    one_by_one = 15 * s.max_epochs * 3.0
    assert job_seconds("sessions", {}, auto, sizes, unit) == pytest.approx(one_by_one)


def test_synthetic_sizes_follow_the_settings():
    config, _ = load_study_config("small")
    sizes = study_sizes(config)
    d = config.data
    assert sizes.test == 2 * d.test_subjects_per_class
    assert sizes.validation == pytest.approx(
        2 * (d.subjects_per_class - d.test_subjects_per_class) / config.study.folds
    )
