"""Shared fixtures: a seeded generator, an odd-shaped grid, and a tiny synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from neuromask.data.synthetic import SynthConfig, generate_cohort  # noqa: E402
from neuromask.io.grid import Grid  # noqa: E402

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
