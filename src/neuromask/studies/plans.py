"""The studies, each a plan: the stages of jobs it needs and the tables it makes of them.

``cnn``: every fold and run trained and evaluated. ``mask-grid``: group masks of one CNN
across the mask hyperparameters. ``group``: one group mask per fold and cohort.
``session``: one mask per session of subjects with several sessions. ``training``: the
masks of different folds and of different runs of a fold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from neuromask.errors import ParameterError
from neuromask.studies import tables
from neuromask.studies.config import STUDIES
from neuromask.studies.engine import Job, Stage
from neuromask.studies.workspace import Workspace, settings_key


@dataclass
class StudyPlan:
    stages: list[Stage]
    tables: Callable[[Workspace], dict[str, pd.DataFrame]]


def stages(
    ws: Workspace,
    *,
    train: list[Job],
    evaluate: list[Job] | None = None,
    masks: list[Job] | None = None,
) -> list[Stage]:
    """The stages of a study: the synthetic data (when asked), then each non-empty stage."""
    out = [Stage("data", [ws.data_job()])] if ws.config.data.synthetic else []
    for name, jobs in (("train", train), ("evaluate", evaluate), ("masks", masks)):
        if jobs:
            out.append(Stage(name, jobs))
    return out


def _cnn(ws: Workspace) -> StudyPlan:
    folds, runs = range(ws.config.study.folds), range(ws.config.study.runs)
    names = ["test"] + (["independent"] if ws.independent else [])
    return StudyPlan(
        stages(
            ws,
            train=[ws.train_job(f, r) for f in folds for r in runs],
            evaluate=[ws.evaluate_job(f, r, n) for f in folds for r in runs for n in names],
        ),
        tables.cnn_tables,
    )


def _mask_grid(ws: Workspace) -> StudyPlan:
    c = ws.config
    unique = {settings_key(m): m for _, _, m in c.mask_grid.settings(c.mask)}
    return StudyPlan(
        stages(
            ws,
            train=[ws.train_job(0, 0)],
            masks=[ws.group_mask_job(0, 0, "adni", m) for m in unique.values()],
        ),
        tables.grid_tables,
    )


def _group(ws: Workspace) -> StudyPlan:
    c = ws.config
    folds = range(c.study.folds)
    masks = [ws.group_mask_job(f, 0, "adni", c.mask) for f in folds]
    if ws.independent:
        masks += [ws.group_mask_job(f, 0, "aibl", c.independent_mask) for f in folds]
    return StudyPlan(
        stages(ws, train=[ws.train_job(f, 0) for f in folds], masks=masks), tables.group_tables
    )


def _session(ws: Workspace) -> StudyPlan:
    return StudyPlan(
        stages(ws, train=[ws.train_job(0, 0)], masks=[ws.session_job()]), tables.session_tables
    )


def _training(ws: Workspace) -> StudyPlan:
    c = ws.config
    pairs = sorted({(f, 0) for f in range(c.study.folds)} | {(0, r) for r in range(c.study.runs)})
    return StudyPlan(
        stages(
            ws,
            train=[ws.train_job(f, r) for f, r in pairs],
            masks=[ws.group_mask_job(f, r, "adni", c.mask) for f, r in pairs],
        ),
        tables.training_tables,
    )


PLANS: dict[str, Callable[[Workspace], StudyPlan]] = {
    "cnn": _cnn,
    "mask-grid": _mask_grid,
    "group": _group,
    "session": _session,
    "training": _training,
}


def plan(ws: Workspace, name: str) -> StudyPlan:
    """The plan of study ``name``."""
    if name not in PLANS:
        raise ParameterError(f"Unknown study {name!r}; valid: {', '.join(STUDIES)}, all")
    return PLANS[name](ws)
