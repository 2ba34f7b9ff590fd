"""``neuromask study NAME``: the paper's experiments, one command each."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import device_option, quiet_option
from neuromask.studies.config import STUDIES


@click.command()
@click.argument("name", type=click.Choice([*STUDIES, "all"]))
@click.option(
    "--config",
    "config_name",
    default="small",
    help="A study TOML file, or a preset shipped with neuromask: small (3 mm synthetic "
    "cohorts, minutes on a CPU) or paper (the paper's scale).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The study folder; studies with the same settings share it and reuse each "
    "other's trainings and masks.",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL shared by the workers. Default: sqlite:///OUT/jobs.db. Give "
    "a PostgreSQL URL to run workers on several machines.",
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=int,
    default=None,
    help="Seconds between worker heartbeats; a job whose worker stays silent for twice "
    "this long is run again by another worker. Default: the config's.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine sharing the jobs: each gets its own GPU "
    "(round robin over the visible ones) or its share of the CPU cores; their logs go "
    "to OUT/workers/.",
)
@click.option("--jobs-only", is_flag=True, hidden=True, help="Run the jobs, write no table.")
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Run nothing: list every job by stage, mark those already done in OUT, and "
    "estimate each stage's cost and the wall time with --workers workers, from a short "
    "calibration on this machine (cached in OUT/plan_calibration.json).",
)
@device_option(help="Where to run.")
@quiet_option(help="No progress bars.")
def study(
    name: str,
    config_name: str,
    out: Path,
    storage: str | None,
    heartbeat_s: int | None,
    workers: int,
    jobs_only: bool,
    plan_only: bool,
    device: str,
    quiet: bool,
) -> None:
    """Run one of the paper's studies (or all) and write its tables into OUT/NAME/.

    \b
    cnn        folds x runs: validation, test and independent-cohort balanced accuracy
    mask-grid  masks across beta1, beta2, lambda1, lambda2 (the paper's Tables 2-3)
    group      one group mask per fold and cohort; their top ROIs and similarities
    session    session masks: intra- vs inter-subject similarity
    training   masks of different folds vs different runs of one fold

    Every training, evaluation and mask is a job in an Optuna storage. Start the same
    command in several terminals or machines (same --out, or same --storage) to share
    the work; rerun it after an interruption to finish what is left.
    """
    from neuromask.studies.config import load_study_config
    from neuromask.studies.run import run_study

    config, text = load_study_config(config_name)
    if plan_only:
        _print_plan(name, config, out, storage, device, workers)
        return
    results = run_study(
        name,
        config,
        out,
        config_text=text,
        storage=storage,
        heartbeat_s=heartbeat_s,
        device=device,
        progress=not quiet,
        workers=workers,
        jobs_only=jobs_only,
    )
    for study_name, tables in results.items():
        for table_name, table in tables.items():
            if table_name == "masks" or table_name.endswith("_runs"):
                continue
            print_table(table, title=f"{study_name}: {table_name}")
        if study_name == "session" and "masks" in tables:
            from neuromask.jobs.masks import unfooled_sessions_message

            message = unfooled_sessions_message(tables["masks"]["p_ad_after"])
            if message:
                console.print(f"[yellow]{message}[/yellow]")
        console.print(f"Tables in {out / study_name}/")


def _print_plan(name, config, out, storage, device, workers) -> None:
    from neuromask.io.layout import StudyLayout
    from neuromask.studies.config import STUDIES
    from neuromask.studies.estimate import estimate_study
    from neuromask.studies.workspace import Workspace

    ws = Workspace(out, config, progress=False, device=device)
    storage = storage or f"sqlite:///{StudyLayout(out).jobs_db.resolve()}"
    names = list(STUDIES) if name == "all" else [name]
    console.print("Calibrating on this machine (cached for the next --plan)...")
    estimate = estimate_study(names, ws, storage, workers)
    jobs = estimate.jobs.assign(minutes=(estimate.jobs["seconds"] / 60).round(2))
    print_table(jobs.drop(columns="seconds"), title=f"Jobs of {name} in {out}")
    hours = estimate.total_s > 7200
    unit, scale = ("h", 3600) if hours else ("min", 60)
    stages = estimate.stages.assign(
        **{f"cpu_{unit}": (estimate.stages["cpu_s"] / scale).round(1),
           f"wall_{unit}": (estimate.stages["wall_s"] / scale).round(1)}
    ).drop(columns=["cpu_s", "wall_s"])  # fmt: skip
    print_table(stages, title=f"Stages, with {workers} worker(s)")
    peaks = ", ".join(f"{k} {v:.0f} MB" for k, v in estimate.peak_mb.items())
    console.print(f"Peak memory of one job's step, as calibrated (the process's): {peaks}")
    if estimate.shared_cores:
        console.print(
            f"The {workers} workers would share this machine's CPU cores (SQLite storage), "
            "which the calibration already used: they are counted as one."
        )
    console.print(
        f"Estimated wall time with {workers} worker(s): {estimate.total_s / scale:.1f} {unit} "
        "(an upper bound where early stopping cuts masks or trainings short)."
    )
    mask = ws.config.mask
    more = len(mask.areas) - 1
    if more:
        later = mask.larger_area_max_epochs + mask.fine_epochs
        console.print(
            f"A group mask counts its first area only: one that does not fool its CNN "
            f"there tries up to {more} larger area(s) (mask setting larger_areas), each "
            f"of up to {later} epochs against the first area's {mask.first_area_epochs}."
        )
