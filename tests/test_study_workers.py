"""``neuromask study ... --workers N``: N processes share one study's jobs, each job runs
once, and the tables are those of a single worker."""

from __future__ import annotations

from collections import Counter

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import study_toml
from neuromask.cli.main import cli
from neuromask.studies.workers import worker_environments


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def one_worker(tiny_training, tmp_path_factory):
    root = tmp_path_factory.mktemp("one_worker")
    config = study_toml(tiny_training, root / "study.toml", train_epochs=2)
    code, output = run("study", "cnn", "--config", config, "--out", root / "out", "-q")
    assert code == 0, output
    return {"config": config, "out": root / "out"}


def _check_shared(one_worker, out, storage):
    for table in sorted((one_worker["out"] / "cnn").glob("*.tsv")):
        expected = pd.read_csv(table, sep="\t")
        got = pd.read_csv(out / "cnn" / table.name, sep="\t")
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-6)
    trials = optuna.load_study(study_name="neuromask", storage=storage).get_trials()
    complete = Counter(t.user_attrs["job"] for t in trials if t.state.name == "COMPLETE")
    assert complete and set(complete.values()) == {1}  # every job finished exactly once
    jobs = {t.user_attrs["job"] for t in trials if "job" in t.user_attrs}
    assert set(complete) == jobs
    # a worker whose look at the queue raced another's pop gets a trial with no job,
    # which it prunes at once (engine.run_stages); nothing else may lack a job
    assert all(t.state.name == "PRUNED" for t in trials if "job" not in t.user_attrs)
    assert (out / "workers" / "worker-0.log").is_file() and (
        out / "workers" / "worker-1.log"
    ).is_file()


def test_two_workers_on_sqlite(one_worker, tmp_path):
    out = tmp_path / "out"
    code, output = run(
        "study", "cnn", "--config", one_worker["config"], "--out", out, "--workers", 2
    )
    assert code == 0, output
    assert "worker 0 started" in output and "worker 1 started" in output
    _check_shared(one_worker, out, f"sqlite:///{out / 'jobs.db'}")


def test_two_workers_on_postgresql(one_worker, tmp_path, postgres_url):
    out = tmp_path / "out"
    code, output = run(
        "study", "cnn", "--config", one_worker["config"], "--out", out, "--workers", 2,
        "--storage", postgres_url, "-q",
    )  # fmt: skip
    assert code == 0, output
    _check_shared(one_worker, out, postgres_url)


def test_worker_environments(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpus = [env["CUDA_VISIBLE_DEVICES"] for env in worker_environments(3, "cuda")]
    assert gpus == ["3", "5", "3"]  # round robin over the visible GPUs
    cpu = worker_environments(2, "cpu", cores=8)
    assert [env["OMP_NUM_THREADS"] for env in cpu] == ["4", "4"]
    assert all(env.get("CUDA_VISIBLE_DEVICES") == "3,5" for env in cpu)  # left as it was
    assert worker_environments(4, "cpu", cores=2)[0]["OMP_NUM_THREADS"] == "1"


def test_a_failing_worker_is_reported(one_worker, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "bad.toml"
    bad.write_text(one_worker["config"].read_text().replace('caps = "', 'caps = "/nowhere'))
    code, output = run("study", "cnn", "--config", bad, "--out", out, "--workers", 2, "-q")
    assert code == 1 and "Traceback" not in output
