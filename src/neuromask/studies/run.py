"""Running a study: ``neuromask study NAME --config FILE --out OUT``.

A study folder (OUT) holds one set of settings (``study.toml``); a rerun with the same
settings resumes, and every study run into it shares its jobs. Jobs run through
:mod:`neuromask.studies.engine` (Optuna, SQLite in OUT by default, or a PostgreSQL URL
for workers on several machines). The folder's layout is
:class:`neuromask.io.layout.StudyLayout`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pandas as pd

from neuromask.errors import OutputExistsError, ParameterError
from neuromask.io.claim import claim_output_dir
from neuromask.io.layout import StudyLayout
from neuromask.io.participants import write_tsv
from neuromask.studies.config import STUDIES, StudyConfig, study_config_from_mapping
from neuromask.studies.engine import run_stages
from neuromask.studies.plans import plan
from neuromask.studies.workspace import Workspace


def claim_study_dir(
    out: Path,
    config: StudyConfig,
    text: str,
    *,
    overwrite: bool = False,
    restart: bool = False,
    allow_unmarked: bool = True,
    what: str = "study",
) -> None:
    """OUT holds one set of settings (``study.toml``); a rerun with the same settings
    resumes, other settings are refused (or, with ``overwrite``, replace it).
    ``restart``: start afresh even with the same settings. ``allow_unmarked``: OUT may
    already hold other files; ``what`` names the folder in errors."""
    marker = StudyLayout(out).settings
    wanted = config.to_toml_mapping()

    def same(path: Path) -> bool:
        current = study_config_from_mapping(tomllib.loads(path.read_text()), str(path))
        return bool(current.to_toml_mapping() == wanted)

    def mismatch(folder: Path) -> OutputExistsError:
        if not marker.is_file():
            return OutputExistsError(
                f"Output folder {folder} already holds files that are not a {what}; choose "
                "another folder, or pass --overwrite to replace them."
            )
        return OutputExistsError(
            f"{folder} holds a study with other settings ({marker}); use another folder."
        )

    claim_output_dir(
        out,
        marker.name,
        text,
        same=same,
        overwrite=overwrite,
        restart=restart,
        allow_unmarked=allow_unmarked,
        mismatch=mismatch,
        inputs=study_inputs(config),
    )


def study_inputs(config: StudyConfig) -> list[str]:
    """The folders and tables a study reads but does not write (none when synthetic)."""
    d = config.data
    if d.synthetic:
        return []
    return [p for p in (d.caps, d.split_dir, d.independent_caps, d.independent_tsv) if p]


def run_study(
    name: str,
    config: StudyConfig,
    out: str | os.PathLike[str],
    *,
    config_text: str = "",
    storage: str | None = None,
    heartbeat_s: int | None = None,
    device: str = "auto",
    progress: bool = True,
    workers: int = 1,
    jobs_only: bool = False,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Run study ``name`` (or ``all``) into ``out``; return its tables (written as TSV in
    ``out/<study>/``).

    ``workers``: run the jobs in that many worker processes on this machine
    (:mod:`neuromask.studies.workers`), then write the tables. ``jobs_only``: run the jobs
    and write no table (what each of those workers does)."""
    out = Path(out)
    names = list(STUDIES) if name == "all" else [name]
    for n in names:
        if n not in STUDIES:
            raise ParameterError(f"Unknown study {n!r}; valid: {', '.join(STUDIES)}, all")
    if not config_text:
        import tomli_w

        config_text = tomli_w.dumps(config.to_toml_mapping())
    claim_study_dir(out, config, config_text)
    ws = Workspace(out, config, progress=progress, device=device)
    storage = storage or f"sqlite:///{StudyLayout(out).jobs_db.resolve()}"
    heartbeat = heartbeat_s or config.study.heartbeat_s
    if workers > 1:
        from neuromask.studies.workers import run_workers

        layout = StudyLayout(out)
        run_workers(workers, name, layout.settings, out, storage, heartbeat, device, progress)
    results = {}
    for n in names:
        study_plan = plan(ws, n)
        if workers <= 1:
            run_stages(
                study_plan.stages,
                storage,
                "neuromask",
                ws.resolve,
                heartbeat_s=heartbeat,
                progress=progress,
            )
        if jobs_only:
            continue
        tables = study_plan.tables(ws)
        folder = StudyLayout(out).tables(n)
        folder.mkdir(exist_ok=True)
        for table_name, table in tables.items():
            write_tsv(table, folder / f"{table_name}.tsv")
        results[n] = tables
    return results
