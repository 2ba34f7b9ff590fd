"""Shared fixtures: a seeded generator, an odd-shaped grid, and a tiny synthetic cohort."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from neuromask.data.synthetic import SynthConfig, generate_cohort  # noqa: E402
from neuromask.io.grid import Grid  # noqa: E402
from neuromask.runtime import tune_allocator  # noqa: E402

tune_allocator()  # as the command does: the suite's CNN steps run about twice as fast

sys.path.insert(0, str(Path(__file__).parent))

# neuromask's data folder (Clinica's AAL2, once installed) is the tests' own: what a
# developer installed in ~/.cache/neuromask must not change the tests' atlas.
os.environ["NEUROMASK_HOME"] = tempfile.mkdtemp(prefix="neuromask-home-")


def pytest_unconfigure(config):
    """Remove the tests' data folder when the session ends (it was left behind)."""
    import shutil

    shutil.rmtree(os.environ["NEUROMASK_HOME"], ignore_errors=True)


TINY = SynthConfig(voxel_size=6.0, subjects_per_class=8, sessions=(1, 3), qc_failures=3, seed=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.fixture
def odd_grid() -> Grid:
    """(7, 8, 9) voxels, LAS, so that axis and orientation mix-ups fail loudly."""
    affine = np.array([[-2.0, 0, 0, 10], [0, 3.0, 0, -20], [0, 0, 4.0, -30], [0, 0, 0, 1]])
    return Grid((7, 8, 9), affine)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory):
    """An ADNI-like cohort on the 6 mm grid: 8 subjects per class, 1-3 sessions, 3 failures."""
    return generate_cohort(TINY, tmp_path_factory.mktemp("tiny") / "synth", progress=False)


@pytest.fixture(scope="session")
def tiny_split_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger participants table (no images) for split tests: 40 subjects per class."""
    import pandas as pd

    gen = np.random.default_rng(7)
    rows = []
    for diagnosis, mean in (("CN", 73.0), ("AD", 75.0)):
        for i in range(40):
            pid = f"sub-{diagnosis}{i:03d}"
            age = float(np.round(gen.normal(mean, 6.0), 1))
            sex = "M" if gen.random() < 0.5 else "F"
            for months in (0, 6, 12)[: int(gen.integers(1, 4))]:
                rows.append((pid, f"ses-M{months:03d}", diagnosis, age + months / 12, sex))
    df = pd.DataFrame(rows, columns=["participant_id", "session_id", "diagnosis", "age", "sex"])
    path = tmp_path_factory.mktemp("split_input") / "participants.tsv"
    df.sample(frac=1.0, random_state=0).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the tests; .ci/run installs it where it is missing."""
    import os

    from postgres_server import find_bin_dir, start_server

    if find_bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run should have installed it")
        pytest.skip("PostgreSQL (initdb) is not installed on this machine")
    server = start_server()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def tiny_training(tiny_cohort, tmp_path_factory):
    """The tiny cohort without its QC failures, split (2 test subjects per class, 2 folds),
    and a training config that runs in seconds."""
    import pandas as pd

    from neuromask.data.split import SplitConfig, make_splits, write_splits
    from neuromask.io.participants import read_participants

    root = tmp_path_factory.mktemp("tiny_training")
    sessions = read_participants(tiny_cohort.participants)
    truth = pd.read_csv(tiny_cohort.ground_truth / "sessions.tsv", sep="\t")
    clean = sessions[(truth["qc_failure"] == "none").to_numpy()]
    split = write_splits(
        make_splits(clean, SplitConfig(test_subjects_per_class=2, folds=2, p_threshold=0.2)),
        root / "split",
    )
    config = root / "tiny.toml"
    config.write_text(
        "learning_rate = 0.001\nbatch_size = 4\nmax_epochs = 3\npatience = 5\n"
        "[model]\nn_blocks = 2\nfirst_filters = 4\nmax_filters = 8\nsub_blocks = [1, 1]\ndropout = 0.0\n"
    )
    return {"caps": tiny_cohort.caps, "split": split, "config": config, "root": root}


@pytest.fixture(scope="session")
def tiny_model(tiny_training, tmp_path_factory):
    """Run 0 of split 0 of the tiny cohort, trained until it separates the classes."""
    from neuromask.train.config import load_train_config
    from neuromask.train.cross_validation import train_splits

    config_path = tiny_training["root"] / "model.toml"
    config_path.write_text(
        tiny_training["config"].read_text().replace("max_epochs = 3", "max_epochs = 12")
    )
    out = tmp_path_factory.mktemp("tiny_model") / "models"
    train_splits(
        tiny_training["caps"],
        tiny_training["split"],
        out,
        load_train_config(config_path),
        splits=[0],
        progress=False,
    )
    return out / "split-0" / "run-0"


def study_toml(tiny_training, path, train_epochs: int = 12):
    """The tiny study's settings. ``train_epochs``: the CNNs' epochs (and patience); tests
    of job sharing and planning, which do not look at the CNNs, train them for 2."""
    t = tiny_training
    path.write_text(
        f"""
[data]
caps = "{t["caps"]}"
split_dir = "{t["split"]}"
independent_caps = "{t["caps"]}"
independent_tsv = "{t["split"] / "test.tsv"}"

[study]
folds = 2
runs = 2
session_subjects = 3
heartbeat_s = 5

[train]
learning_rate = 0.001
batch_size = 4
max_epochs = {train_epochs}
patience = {train_epochs}
[train.model]
n_blocks = 2
first_filters = 4
max_filters = 8
sub_blocks = [1, 1]
dropout = 0.0

[mask]
max_epochs = 3
batch_size = 4
lambda1 = 0.00001
lambda2 = 0.00001

[independent_mask]
max_epochs = 3
batch_size = 4
lambda1 = 0.00001
lambda2 = 0.00001

[session_mask]
max_epochs = 15
patience = 15
batch_size = 8
lambda1 = 0.00001
lambda2 = 0.00001

[mask_grid]
beta1 = [0.1, 1.0]
beta2 = [1.0, 2.0]
lambda1 = [0.0001]
lambda2 = [0.01, 0.001]
"""
    )
    return path


@pytest.fixture(scope="session")
def finished_study(tiny_training, tmp_path_factory):
    """Every study of `neuromask study all` on the tiny cohort (2 folds x 2 runs)."""
    from click.testing import CliRunner

    from neuromask.cli.main import cli

    root = tmp_path_factory.mktemp("study")
    config = study_toml(tiny_training, root / "study.toml")
    out = root / "out"
    result = CliRunner().invoke(
        cli,
        ["study", "all", "--config", str(config), "--out", str(out), "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return {"config": config, "out": out, "output": result.output}


#: The grid of the planted model's images (tests/test_explain.py, test_mask_levers.py).
PLANTED_SHAPE = (7, 8, 9)


def planted_healthy_sessions(k: int = 6, seed: int = 5) -> np.ndarray:
    """CN-like maps of the planted cohort (no dark block): the CN sessions that the
    default mask's healthy reference restores deleted voxels from."""
    return np.random.default_rng(seed).normal(0.5, 0.05, (k, *PLANTED_SHAPE)).astype(np.float32)


@pytest.fixture(scope="session")
def planted_model(tmp_path_factory):
    """A small CNN trained to call AD the images with a dark block in one corner."""
    import pandas as pd
    import torch

    from neuromask.models import CNNConfig
    from neuromask.train.config import TrainConfig
    from neuromask.train.evaluate import load_trained_model
    from neuromask.train.trainer import train_run

    gen = np.random.default_rng(0)
    n = 40
    y = np.array([0, 1] * (n // 2))
    x = gen.normal(0.5, 0.05, (n, *PLANTED_SHAPE)).astype(np.float32)
    x[y == 1, :3, :3, :3] -= 0.4
    sessions = pd.DataFrame(
        {"participant_id": [f"sub-{i}" for i in range(n)], "session_id": ["ses-M000"] * n}
    )
    out = tmp_path_factory.mktemp("planted") / "run"
    config = TrainConfig(
        model=CNNConfig(n_blocks=2, first_filters=4, max_filters=8, sub_blocks=(1, 1), dropout=0.0),
        learning_rate=1e-2,
        batch_size=8,
        max_epochs=12,
        patience=12,
        device="cpu",
    )
    x_t, y_t = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
    result = train_run(
        x_t,
        y_t,
        np.arange(32),
        np.arange(32, 40),
        sessions.iloc[32:],
        config,
        out,
        run_seed=0,
        progress=False,
    )
    assert result.validation["balanced_accuracy"] == 1.0
    model, _ = load_trained_model(out)
    ad = x_t[y_t == 1]
    return model, ad[:12], ad[12:]
