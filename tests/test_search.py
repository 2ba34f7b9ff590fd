"""``neuromask search``: two workers on one storage run distinct trials and lose none,
on SQLite and on a real PostgreSQL server."""

import os
import subprocess
import sys

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
