"""Optuna storages shared by several workers, and one trial run safely among them.

Searches (``neuromask search``) and studies (``neuromask.studies.engine``) keep their
trials in an RDB storage with a heartbeat: SQLite by default, PostgreSQL for workers on
several machines. A worker that dies leaves its trial RUNNING; another worker's
``fail_stale_trials`` marks it failed once its heartbeat is older than the grace period,
and a copy is queued, which resumes from the trial's own checkpoints.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy


def open_storage(url: str, heartbeat_s: int) -> optuna.storages.RDBStorage:
    """An RDB storage with a heartbeat, so that trials of dead workers are retried.

    On SQLite every transaction takes the database's write lock as it begins (``BEGIN
    IMMEDIATE``; the driver's own ``BEGIN`` is turned off). Optuna pops a waiting trial by
    reading its state and then writing RUNNING; PostgreSQL locks the row in between
    (``SELECT ... FOR UPDATE``), SQLite ignores that, so two workers could both pop one
    trial and run its job twice (4 processes popping 300 trials: 15 and 28 popped twice
    in two runs). Serialised, none is."""
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict[str, Any] = {}
    if sqlite:
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_s,
            grace_period=2 * heartbeat_s,
            heartbeat_stale_trial_callback=retry,
        )
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
    return storage


def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_or_load_study(
    storage: str,
    study_name: str,
    heartbeat_s: int,
    *,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """Create or load a study on a heartbeat storage. Workers starting at the same moment
    may race to create the tables or the study, so a failed attempt is retried."""
    import sqlalchemy.exc

    for attempt in range(6):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=open_storage(storage, heartbeat_s),
                direction=direction,  # type: ignore[arg-type]
                sampler=sampler,
                load_if_exists=True,
            )
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.IntegrityError,
            # PostgreSQL: two workers creating the tables at once ("relation ... exists")
            sqlalchemy.exc.ProgrammingError,
        ):
            if attempt == 5:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def optimize_one(study: optuna.Study, objective: Callable[[optuna.Trial], float]) -> bool:
    """Run one trial of ``study``; return False if another worker finished it meanwhile.

    A live worker whose heartbeats stalled past the grace period (a loaded machine, SQLite
    locks, a slow disk) can see its running trial failed as stale by another worker,
    which queues a copy. Optuna then refuses to record the outcome (the error depends on
    the moment: ``UpdateFinishedTrialError``, or a ``ValueError`` followed by an
    ``AssertionError``). The same refusal came in CI on SQLite for a trial that the
    storage held finished but not failed, recorded by another worker that had popped the
    same trial (SQLite ignored the row lock; :func:`open_storage` now serialises it).
    The worker must not stop there: the objective's own error is raised as it is, and
    otherwise the copy, or the other worker, has the work done (jobs are idempotent).
    """
    ran: list[int] = []
    raised: list[BaseException] = []

    def watched(trial: optuna.Trial) -> float:
        ran.append(trial._trial_id)
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            raised.append(exc)
            raise

    try:
        study.optimize(watched, n_trials=1, catch=(), gc_after_trial=False)
    except Exception as exc:
        if raised and exc is raised[0]:  # the objective failed, and Optuna recorded it
            raise
        refused = (optuna.exceptions.UpdateFinishedTrialError, ValueError, AssertionError)
        if not ran or not isinstance(exc, refused):
            raise
        if not study._storage.get_trial(ran[0]).state.is_finished():
            raise
        if raised:
            raise raised[0] from exc
        return False
    return True
