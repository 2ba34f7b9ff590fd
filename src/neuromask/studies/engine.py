"""Running independent jobs through Optuna, so that several workers can share them.

Every job of a study folder is a trial of one Optuna study, in one storage (SQLite by
default, or a PostgreSQL URL for workers on several machines). A trial carries its job in
user attributes: a unique ``job`` key and a JSON ``spec`` from which any worker rebuilds
the job. Jobs come in stages (data, then trainings, then evaluations and masks):

- a worker enqueues the jobs of a stage that the study does not hold yet, then pops
  waiting trials (Optuna hands each waiting trial to one worker) and runs their jobs;
- a job that is already complete, or running in a trial with a lower number, is skipped
  (the trial is pruned), so two workers never run one job, even if it was enqueued twice;
- a worker that dies leaves its trial RUNNING; Optuna's heartbeat marks it failed after
  the grace period and re-queues a copy, and the job resumes from its own checkpoint.
  A worker killed between Optuna's pop of a trial and its first heartbeat leaves a RUNNING
  trial that Optuna never sees as stale, so a waiting worker writes one heartbeat for
  every running trial it meets (a live worker's own heartbeats simply overwrite it);
- a worker whose heartbeats stalled past the grace period (a loaded machine, a slow
  disk) may see its trial failed by another worker while its job still runs; it keeps
  going, and the retried copy finds the job's outputs done;
- a rerun runs only the jobs without a COMPLETE trial;
- a worker leaves a stage only once every job of it is complete.

Jobs must be idempotent and resumable (trainings and masks checkpoint and keep a done
marker), because a job killed midway runs again.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from neuromask.errors import NeuromaskError
from neuromask.progress import console
from neuromask.train.optuna_storage import create_or_load_study, optimize_one

Resolver = Callable[[dict[str, Any]], Callable[[], object]]


@dataclass(frozen=True)
class Job:
    key: str
    spec: dict[str, Any]


@dataclass
class Stage:
    name: str
    jobs: list[Job] = field(default_factory=list)


class StudyJobError(NeuromaskError, RuntimeError):
    """A job of a study failed."""


def _load_or_create(url: str, heartbeat_s: int, name: str) -> optuna.Study:

    return create_or_load_study(
        url,
        name,
        heartbeat_s,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


_STATE = {
    TrialState.COMPLETE: "complete",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
_RANK = {"missing": 0, "waiting": 1, "running": 2, "complete": 3}


def job_status(study: optuna.Study, keys: Sequence[str]) -> dict[str, str]:
    """Each job's state: 'complete', 'running', 'waiting' or 'missing' (never enqueued,
    or only failed and pruned trials)."""
    status = dict.fromkeys(keys, "missing")
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get("job")
        state = _STATE.get(trial.state)
        if key in status and state and _RANK[state] > _RANK[status[key]]:
            status[key] = state
    return status


def job_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials ran each job to completion (1 for every finished job)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = trial.user_attrs["job"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _heartbeat_once(study: optuna.Study, touched: set[int]) -> None:
    """Record one heartbeat for each running trial not met before.

    Optuna marks a trial stale only once it has a heartbeat older than the grace period;
    a worker that died right after popping its trial left none, and its job would wait
    forever. One heartbeat written here makes such a trial stale a grace period later. A
    live trial's own heartbeat thread overwrites it, so it is never failed by mistake.
    """
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in touched:
            touched.add(trial._trial_id)
            storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]


class _JobRunner:
    """Runs one waiting trial's job at a time for a worker."""

    def __init__(self, study: optuna.Study, resolve: Resolver, progress: bool) -> None:
        self.study = study
        self.resolve = resolve
        self.progress = progress

    def objective(self, trial: optuna.Trial) -> float:
        key = trial.user_attrs.get("job")
        if key is None:  # the queue ran dry between our look and Optuna's pop
            raise optuna.TrialPruned("no job")
        for other in self.study.get_trials(deepcopy=False):
            if other.number == trial.number or other.user_attrs.get("job") != key:
                continue
            if other.state == TrialState.COMPLETE or (
                other.state == TrialState.RUNNING and other.number < trial.number
            ):
                raise optuna.TrialPruned(f"job {key} is done or running elsewhere")
        if self.progress:
            console.print(f"[bold]job[/bold] {key}")
        try:
            self.resolve(trial.user_attrs["spec"])()
        except NeuromaskError:
            raise
        except Exception as exc:
            raise StudyJobError(f"Job {key} failed: {type(exc).__name__}: {exc}") from exc
        return 0.0

    def run_one(self) -> None:
        if not optimize_one(self.study, self.objective) and self.progress:
            console.print(
                "[yellow]a job's trial was failed by another worker while it ran "
                "(heartbeat late); its copy will find the job done[/yellow]"
            )


def run_stages(
    stages: Sequence[Stage],
    storage_url: str,
    study_name: str,
    resolve: Resolver,
    *,
    heartbeat_s: int = 60,
    poll_s: float = 2.0,
    progress: bool = True,
) -> dict[str, str]:
    """Run every stage's jobs, sharing them with any other worker on the same storage;
    return the final state of each job."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # job errors are reported by us
    study = _load_or_create(storage_url, heartbeat_s, study_name)

    runner = _JobRunner(study, resolve, progress)
    final: dict[str, str] = {}
    for stage in stages:
        keys = [job.key for job in stage.jobs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"stage {stage.name}: job keys must be unique")
        specs = {job.key: job.spec for job in stage.jobs}
        announced = False
        touched: set[int] = set()
        while True:
            status = job_status(study, keys)
            todo = [k for k in keys if status[k] != "complete"]
            if not todo:
                break
            for key in todo:
                if status[key] == "missing":
                    study.enqueue_trial({}, user_attrs={"job": key, "spec": specs[key]})
            if progress and not announced:
                console.print(
                    f"[bold]{stage.name}[/bold]: {len(keys) - len(todo)} of {len(keys)} "
                    "jobs already done"
                )
                announced = True
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:
                # Only jobs running in other workers (or in dead ones, until the heartbeat
                # marks them failed and queues them again).
                _heartbeat_once(study, touched)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    optuna.storages.fail_stale_trials(study)
                time.sleep(poll_s)
                continue
            runner.run_one()
        final.update(job_status(study, keys))
    return final
