"""The study engine: jobs shared by worker processes through Optuna storages."""

import collections
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest

from neuromask.studies.engine import job_counts, run_stages

WORKER = str(Path(__file__).with_name("engine_worker.py"))


def start_worker(url, log_dir, n_jobs=6, sleep_s=0.3, heartbeat=1):
    """A worker process. The two-worker tests pass a heartbeat of 5 s: at 1 s (a grace
    period of 2 s) a loaded machine's SQLite locks can make a live worker look dead."""
    return subprocess.Popen(
        [sys.executable, WORKER, url, str(log_dir), str(n_jobs), str(sleep_s), str(heartbeat)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def started(log_dir):
    path = Path(log_dir) / "log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


def check_two_workers(url, log_dir):
    workers = [start_worker(url, log_dir, heartbeat=5) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    runs = started(log_dir)
    counts = collections.Counter(name for name, _ in runs)
    expected = {f"a{i}" for i in range(6)} | {"b0", "b1"}
    assert set(counts) == expected and set(counts.values()) == {1}, counts
    # Both workers took part, and no second-stage job started before the first stage ended.
    assert len({pid for _, pid in runs}) == 2
    order = [name for name, _ in runs]
    assert max(order.index(f"a{i}") for i in range(6)) < min(order.index("b0"), order.index("b1"))
    study = optuna.load_study(study_name="test-engine", storage=url)
    assert set(job_counts(study).values()) == {1} and len(job_counts(study)) == 8


def test_two_workers_on_sqlite_share_jobs_without_repeating_one(tmp_path):
    check_two_workers(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "logs")


@pytest.mark.slow
def test_two_workers_on_postgresql_share_jobs_without_repeating_one(postgres_url, tmp_path):
    check_two_workers(postgres_url, tmp_path / "logs")


@pytest.mark.slow
def test_killed_worker_rerun_finishes_without_redoing_finished_jobs(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    log_dir = tmp_path / "logs"
    worker = start_worker(url, log_dir, n_jobs=6, sleep_s=1.0, heartbeat=1)
    deadline = time.time() + 120
    while len(list((log_dir / "done").glob("a*"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    finished = {p.name for p in (log_dir / "done").iterdir()}
    assert 2 <= len(finished) < 6
    rerun = start_worker(url, log_dir, n_jobs=6, sleep_s=0.1, heartbeat=1)
    out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    counts = collections.Counter(name for name, _ in started(log_dir))
    for name in finished:  # finished before the kill: never started again
        assert counts[name] == 1, counts
    assert {p.name for p in (log_dir / "done").iterdir()} == {f"a{i}" for i in range(6)} | {
        "b0",
        "b1",
    }
    study = optuna.load_study(study_name="test-engine", storage=url)
    assert len(job_counts(study)) == 8


def _three_jobs_the_second_fails_once(fail):
    """Three jobs; the second calls ``fail`` on its first run. Returns the stages, the
    resolver and the list of job numbers run."""
    from neuromask.studies.engine import Job, Stage

    calls = []

    def resolve(spec):
        def run():
            calls.append(spec["n"])
            if spec["n"] == 1 and calls.count(1) == 1:
                fail()

        return run

    return [Stage("only", [Job(f"j/{n}", {"n": n}) for n in range(3)])], resolve, calls


def test_a_failing_job_stops_the_worker_and_a_rerun_retries_it(tmp_path):
    from neuromask.errors import NeuromaskError

    def disk_full():
        raise RuntimeError("disk full")

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    stages, resolve, calls = _three_jobs_the_second_fails_once(disk_full)
    with pytest.raises(NeuromaskError, match="Job j/1 failed: RuntimeError: disk full"):
        run_stages(stages, url, "s", resolve, heartbeat_s=5, poll_s=0.1, progress=False)
    states = run_stages(stages, url, "s", resolve, heartbeat_s=5, poll_s=0.1, progress=False)
    assert states == {"j/0": "complete", "j/1": "complete", "j/2": "complete"}
    assert collections.Counter(calls) == {0: 1, 1: 2, 2: 1}


def test_a_terminated_worker_records_its_job_failed_at_once(tmp_path):
    """SIGTERM (a scheduler's time limit, pre-emption) during a job: the worker leaves
    with Terminated and the trial is FAIL at once, not RUNNING until a heartbeat grace
    period passes, so the next worker queues the job again without waiting."""
    from neuromask.cli.main import Terminated, sigterm_unwinds
    from neuromask.studies.engine import job_status

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    stages, resolve, calls = _three_jobs_the_second_fails_once(
        lambda: os.kill(os.getpid(), signal.SIGTERM)
    )
    with pytest.raises(Terminated), sigterm_unwinds():
        run_stages(stages, url, "s", resolve, heartbeat_s=600, poll_s=0.1, progress=False)
    study = optuna.load_study(study_name="s", storage=url)
    states = {t.user_attrs["job"]: t.state for t in study.get_trials()}
    assert states["j/1"] == optuna.trial.TrialState.FAIL
    assert job_status(study, ["j/1"]) == {"j/1": "missing"}
    # a heartbeat of 600 s: a trial left RUNNING would hold the rerun for 20 minutes
    states = run_stages(stages, url, "s", resolve, heartbeat_s=600, poll_s=0.1, progress=False)
    assert states == {"j/0": "complete", "j/1": "complete", "j/2": "complete"}
    assert collections.Counter(calls) == {0: 1, 1: 2, 2: 1}


def _fail_running_trials(url):
    """What another worker does to trials whose heartbeat it finds stale."""
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name("s")
    for trial in storage.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def test_a_job_whose_trial_another_worker_failed_as_stale_still_finishes(tmp_path):
    """A worker whose heartbeat stalled (a loaded machine, a slow disk) sees its trial
    failed by another worker while its job runs; it must not crash, and the job ends
    complete (its rerun finds the job's outputs done)."""
    from neuromask.studies.engine import Job, Stage

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    calls = []

    def resolve(spec):
        def run():
            calls.append(spec["n"])
            if spec["n"] == 0 and calls.count(0) == 1:
                _fail_running_trials(url)

        return run

    stages = [Stage("only", [Job(f"j/{n}", {"n": n}) for n in range(2)])]
    states = run_stages(stages, url, "s", resolve, heartbeat_s=5, poll_s=0.1, progress=False)
    assert states == {"j/0": "complete", "j/1": "complete"}
    assert collections.Counter(calls) == {0: 2, 1: 1}


def test_a_failing_job_whose_trial_was_failed_meanwhile_reports_its_own_error(tmp_path):
    from neuromask.errors import NeuromaskError
    from neuromask.studies.engine import Job, Stage

    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    def resolve(spec):
        def run():
            _fail_running_trials(url)
            raise RuntimeError("disk full")

        return run

    stages = [Stage("only", [Job("j/0", {"n": 0})])]
    with pytest.raises(NeuromaskError, match="Job j/0 failed: RuntimeError: disk full"):
        run_stages(stages, url, "s", resolve, heartbeat_s=5, poll_s=0.1, progress=False)


@pytest.mark.slow
def test_a_worker_killed_before_its_first_heartbeat_does_not_block_the_job(tmp_path):
    """A trial popped (RUNNING) by a worker that died before Optuna's heartbeat thread
    wrote anything is never stale to Optuna; the engine must still rerun its job."""
    from neuromask.studies.engine import Job, Stage
    from neuromask.train.optuna_storage import create_or_load_study

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    study = create_or_load_study(
        url, "s", 1, direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.enqueue_trial({}, user_attrs={"job": "j/0", "spec": {"n": 0}})
    with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for optimize
        warnings.simplefilter("ignore", UserWarning)
        orphan = study.ask()  # popped, RUNNING, and no heartbeat: the dead worker's state
    assert orphan.user_attrs["job"] == "j/0"
    calls = []

    def resolve(spec):
        return lambda: calls.append(spec["n"])

    stages = [Stage("only", [Job("j/0", {"n": 0}), Job("j/1", {"n": 1})])]
    result = {}

    def work():
        result["states"] = run_stages(
            stages, url, "s", resolve, heartbeat_s=1, poll_s=0.1, progress=False
        )

    import threading

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=120)  # without the fix, the worker waits for the orphan forever
    assert not thread.is_alive(), "the orphaned job was never run again"
    assert result["states"] == {"j/0": "complete", "j/1": "complete"}
    assert sorted(calls) == [0, 1]
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.number for t in failed] == [orphan.number]
