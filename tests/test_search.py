"""``neuromask search``: two workers on one storage run distinct trials and lose none,
on SQLite and on a real PostgreSQL server."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from neuromask.train.config import load_train_config
from neuromask.train.search import STUDY_NAME

SMALL_SPACE = """
[search]
n_blocks = [2, 3]
first_filters = [2, 4]
max_filters = 8
fc_layers = [1, 2]
batch_size = [4, 8]
"""


def two_workers(tiny_training, out, storage, trials=4):
    t = tiny_training
    config = out.parent / "search.toml"
    config.write_text(t["config"].read_text() + SMALL_SPACE)
    command = [
        sys.executable,
        "-m",
        "neuromask",
        "search",
        str(t["caps"]),
        str(t["split"]),
        str(out),
        "--trials",
        str(trials),
        "--config",
        str(config),
        "--heartbeat",
        "5",
        "--quiet",
    ]
    if storage:
        command += ["--storage", storage]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [*command, "--seed", str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, output
    return optuna.load_study(
        study_name=STUDY_NAME, storage=storage or f"sqlite:///{out / 'search.db'}"
    )


def check_study(study, out, trials=4, workers=2):
    states = [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert trials <= len(complete) <= trials + workers - 1
    assert (
        optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.FAIL not in states
    )
    assert len({t.number for t in complete}) == len(complete)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(
        complete
    )  # distinct trials
    for trial in complete:
        run_dir = trial.user_attrs["run_dir"]
        assert os.path.isfile(os.path.join(run_dir, "validation_metrics.json"))
        assert 0.0 <= trial.value <= 1.0
    best = load_train_config(out / "best_config.toml")
    assert best.max_epochs == 3  # settings outside the space come from --config
    assert best.learning_rate == pytest.approx(study.best_trial.params["learning_rate"])
    assert all(
        2 <= t.params["n_blocks"] <= 3 and t.params["first_filters"] in (2, 4) for t in complete
    )


@pytest.mark.slow
def test_two_workers_on_sqlite(tiny_training, tmp_path):
    study = two_workers(tiny_training, tmp_path / "search", storage=None)
    check_study(study, tmp_path / "search")


@pytest.mark.slow
def test_two_workers_on_postgresql(tiny_training, tmp_path, postgres_url):
    study = two_workers(tiny_training, tmp_path / "search", storage=postgres_url)
    check_study(study, tmp_path / "search")


def dartel_caps(tiny_training, root, group="test"):
    """A copy of the tiny CAPS folder whose sessions also hold 'modulated' DARTEL maps of
    ``group``: the segmentation maps scaled by 1.5, so that a trial trained on them can be
    told from one trained on the segmentation maps."""
    import shutil

    import nibabel as nib

    from neuromask.io.caps import gm_map_path
    from neuromask.io.participants import read_participants

    caps = root / "caps"
    shutil.copytree(tiny_training["caps"], caps)
    sessions = read_participants(tiny_training["split"] / "train_val.tsv")
    for row in sessions.itertuples():
        seg = nib.load(gm_map_path(caps, row.participant_id, row.session_id))
        target = gm_map_path(caps, row.participant_id, row.session_id, group)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = np.asarray(seg.dataobj, dtype=np.float32) * 1.5
        nib.save(nib.Nifti1Image(data, seg.affine), target)
    return caps


def test_search_samples_the_data_preprocessing(tiny_training, tmp_path):
    """With ``preprocessing = ["dartel:test"]`` every trial trains on the DARTEL maps, its
    record names the group (so that evaluate and mask read the same maps) and
    best_config.toml tells the user to train with --dartel-group."""
    import json

    from neuromask.train.config import load_train_config
    from neuromask.train.search import SearchSpace, run_search

    caps = dartel_caps(tiny_training, tmp_path)
    space = SearchSpace(
        n_blocks=(2, 2),
        first_filters=(2,),
        max_filters=4,
        fc_layers=(1, 1),
        batch_size=(4,),
        preprocessing=("dartel:test",),
    )
    base = load_train_config(tiny_training["config"])
    study = run_search(
        caps,
        tiny_training["split"],
        tmp_path / "search",
        trials=1,
        base=base,
        space=space,
        seed=0,
        progress=False,
    )
    (trial,) = study.trials
    assert trial.params["preprocessing"] == "dartel:test"
    record = json.loads((Path(trial.user_attrs["run_dir"]) / "config.json").read_text())
    assert record["dartel_group"] == "test"
    assert "--dartel-group test" in (tmp_path / "search" / "best_config.toml").read_text()


def test_search_stops_before_any_trial_when_a_preprocessing_choice_lacks_maps(
    tiny_training, tmp_path
):
    from neuromask.errors import NeuromaskError
    from neuromask.train.search import SearchSpace, run_search

    space = SearchSpace(preprocessing=("segmentation", "dartel:absent"))
    with pytest.raises(NeuromaskError, match="group-absent"):
        run_search(
            tiny_training["caps"],
            tiny_training["split"],
            tmp_path / "search",
            trials=1,
            space=space,
            seed=0,
            progress=False,
        )
    study = (
        optuna.load_study(
            study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'search' / 'search.db'}"
        )
        if (tmp_path / "search" / "search.db").exists()
        else None
    )
    assert study is None or not study.trials


@pytest.mark.parametrize("choice", ["dartel:", "dartel", "modulated", "DARTEL:AD"])
def test_bad_preprocessing_choices_are_named(choice):
    from neuromask.errors import ParameterError
    from neuromask.train.search import SearchSpace

    with pytest.raises(ParameterError, match="search.preprocessing"):
        SearchSpace(preprocessing=("segmentation", choice))
