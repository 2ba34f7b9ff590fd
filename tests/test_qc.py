import shutil

import numpy as np
import pandas as pd
import pytest

from neuromask.data.qc import QCThresholds, qc_decision, qc_metrics, run_qc
from neuromask.errors import GridMismatchError, ParameterError
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, save_volume
from neuromask.io.participants import read_participants
from neuromask.jobs.qc import quality_check_folder


def test_metrics_against_hand_computation():
    gm = np.zeros((4, 5, 6), np.float32)
    gm[1:3, 1:3, 1:3] = 0.5
    gm[0, 0, 0] = 0.97
    metrics = qc_metrics(gm)
    assert metrics["max_gm"] == pytest.approx(0.97)
    assert metrics["nonzero_fraction"] == pytest.approx(9 / 120)
    passed, reason = qc_decision(metrics, QCThresholds())
    assert not passed and reason == "nonzero_fraction 0.075 < 0.15"
    passed, reason = qc_decision({"max_gm": 0.9, "nonzero_fraction": 0.6}, QCThresholds())
    assert reason == "max_gm 0.900 < 0.95; nonzero_fraction 0.600 > 0.5"
    assert qc_decision({"max_gm": 0.95, "nonzero_fraction": 0.3}, QCThresholds()) == (True, "")


def test_thresholds_are_validated():
    with pytest.raises(ParameterError, match="min_max_gm"):
        QCThresholds(min_max_gm=1.5)
    with pytest.raises(ParameterError, match="min_nonzero < max_nonzero"):
        QCThresholds(min_nonzero=0.6, max_nonzero=0.5)


def test_qc_flags_exactly_the_injected_failures(tiny_cohort):
    sessions = read_participants(tiny_cohort.participants)
    table = run_qc(tiny_cohort.caps, sessions, progress=False)
    truth = pd.read_csv(tiny_cohort.ground_truth / "sessions.tsv", sep="\t")
    merged = table.merge(truth, on=["participant_id", "session_id"], validate="one_to_one")
    assert len(merged) == len(sessions)
    np.testing.assert_array_equal(merged["qc_pass"], merged["qc_failure"] == "none")
    block = merged[merged["qc_failure"] == "block"]
    assert block["qc_reason"].str.contains("nonzero_fraction").all()
    low = merged[merged["qc_failure"] == "low_max"]
    assert low["qc_reason"].str.contains("max_gm").all()


def test_quality_check_folder_writes_tables_and_figure(tiny_cohort, tmp_path):
    out = quality_check_folder(
        tiny_cohort.caps, tiny_cohort.participants, tmp_path / "qc", progress=False
    )
    source = pd.read_csv(tiny_cohort.participants, sep="\t")
    passed = pd.read_csv(out.pass_tsv, sep="\t")
    assert list(passed.columns) == list(source.columns)
    assert len(passed) == len(source) - 3
    qc = pd.read_csv(out.qc_tsv, sep="\t")
    assert {"max_gm", "nonzero_fraction", "qc_pass", "qc_reason"} <= set(qc.columns)
    png = out.figure.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "qc" / "qc.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc"]


def test_a_map_on_another_grid_is_named(tiny_cohort, tmp_path):
    caps = tmp_path / "caps"
    shutil.copytree(tiny_cohort.caps, caps)
    sessions = read_participants(tiny_cohort.participants)
    third = gm_map_path(caps, sessions["participant_id"][2], sessions["session_id"][2])
    data, grid = load_volume(third)
    las = grid.affine.copy()
    las[0, 0] *= -1
    save_volume(third, data, Grid(grid.shape, las))
    with pytest.raises(GridMismatchError, match=third.name):
        run_qc(caps, sessions, progress=False)
