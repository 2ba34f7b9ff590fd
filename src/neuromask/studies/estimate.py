"""A study's plan before the spend: every job it would run, by stage, which are done, and
what each stage should cost: ``neuromask study NAME --config C --out O --plan``.

The cost comes from a short calibration on this machine, with the study's own grid, CNN
and batch sizes on random images: a training step, an inference batch, a group-mask step,
a session-mask step, and the synthesis and quality check of a two-subject cohort when
the data are synthetic. It is cached in ``O/plan_calibration.json`` (keyed on those
settings and the device), so a second ``--plan`` is immediate.

Each job's cost is its count of those units, from the study's sizes:

- training: ``max_epochs`` epochs of ``ceil(n_train / batch)`` steps, plus the
  validation sessions' inference each epoch (early stopping can only make it shorter);
- evaluation: the inference of the test or independent sessions;
- group mask: ``max_epochs`` (plus ``refine_epochs`` of the fine stage) epochs of
  ``ceil(n_AD / batch)`` mask steps, plus the masked validation sessions' inference each
  epoch;
- session masks: ``ceil(n / batch)`` slots of masks, each ``max_epochs`` steps (an
  automatic batch, ``batch_size = 0``, is counted as 1: exact on the CPU, an upper bound
  on a GPU);
- data: per-session synthesis and quality check times the cohorts' sessions.

Session counts come from the split when it exists, else from the settings (synthetic:
``subjects_per_class`` per class, 2 sessions per ADNI-like subject and 1.5 per AIBL-like
one on average). Masks and trainings are counted at their ``max_epochs``, so the plan is
an upper bound where early stopping cuts them short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neuromask.studies.config import StudyConfig

#: Mean sessions per subject of the synthetic cohorts (1 to 3, and 1 to 2).
ADNI_SESSIONS, AIBL_SESSIONS = 2.0, 1.5


@dataclass
class Sizes:
    """The session counts a study's jobs work on."""

    train: float
    validation: float
    test: float
    independent: float
    independent_baseline: float
    sessions_for_masks: float
    data_sessions: float


def study_sizes(config: StudyConfig, split_tables: tuple[Any, ...] | None = None) -> Sizes:
    """Session counts from the split's tables when given (train, validation, test and
    the independent table), else from the synthetic cohorts' settings."""
    d, k = config.data, config.study.folds
    if split_tables is not None:
        train, validation, test, independent = split_tables
        base = independent.groupby("participant_id").ngroups if independent is not None else 0
        n_ind = len(independent) if independent is not None else 0
        subjects = config.study.session_subjects or train["participant_id"].nunique() // 2
        return Sizes(len(train), len(validation), len(test), n_ind, base,
                     subjects * ADNI_SESSIONS, 0.0)  # fmt: skip
    rest = 2 * (d.subjects_per_class - d.test_subjects_per_class)
    independent = 2 * d.independent_subjects_per_class
    subjects = config.study.session_subjects or rest // 2
    return Sizes(
        train=rest * ADNI_SESSIONS * (k - 1) / k,
        validation=rest / k,
        test=2 * d.test_subjects_per_class,
        independent=independent * AIBL_SESSIONS if d.synthetic else 0.0,
        independent_baseline=independent if d.synthetic else 0.0,
        sessions_for_masks=subjects * (ADNI_SESSIONS + 0.5),  # subjects with 2 or 3
        data_sessions=2 * d.subjects_per_class * ADNI_SESSIONS + independent * AIBL_SESSIONS,
    )


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory measurement: the GPU's allocator statistics, or on Linux
    the process's peak resident size (``clear_refs``)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # not Linux: the peak covers the calibration so far
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak`: GPU memory allocated, or resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(work: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Seconds per call of ``work``, after one warm-up call."""
    work()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def calibrate(
    config: StudyConfig, shape: tuple[int, int, int], device: torch.device
) -> dict[str, float]:
    """Seconds per unit of work, and peak memory in MB, measured on this machine."""
    from neuromask.explain import MeaningfulPerturbation
    from neuromask.models.cnn import CNN3D

    out: dict[str, float] = {}
    reset_peak(device)
    t = config.train
    model = CNN3D(t.model, shape).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    x = torch.rand(t.batch_size, 1, *shape, device=device)
    y = torch.randint(0, 2, (t.batch_size,), device=device)

    def train_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    out["train_step"] = timed(train_step, device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        out["infer_image"] = timed(lambda: model(x), device) / t.batch_size
    out["train_peak_mb"] = peak_mb(device)
    for name, mask in (("mask", config.mask), ("session", config.session_mask)):
        reset_peak(device)
        size = max(mask.batch_size, 1)  # automatic (0): counted one at a time
        batch = torch.rand(size, 1, *shape, device=device)
        settings = dataclasses.replace(
            mask, reference="constant", max_epochs=1, patience=1, refine_epochs=0,
            batch_size=size,
        )  # fmt: skip
        explainer = MeaningfulPerturbation(model, settings, device=device, progress=False)
        mode = "group" if name == "mask" else "session"

        def mask_epoch(e: Any = explainer, b: torch.Tensor = batch, m: str = mode) -> None:
            e.attribute(b, 1, mode=m)

        out[f"{name}_step"] = timed(mask_epoch, device, 1)
        out[f"{name}_peak_mb"] = peak_mb(device)
    if config.data.synthetic:
        out["data_session"] = _calibrate_data(config)
    return out


def _calibrate_data(config: StudyConfig) -> float:
    """Seconds per session to synthesise and quality-check a cohort on the study's grid."""
    from neuromask.data.synthetic import SynthConfig, generate_cohort
    from neuromask.io.participants import read_participants
    from neuromask.jobs.qc import quality_check_folder

    d = config.data
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cohort = generate_cohort(
            SynthConfig(subjects_per_class=3, voxel_size=d.voxel_size, qc_failures=0, seed=d.seed),
            Path(tmp) / "cohort",
            progress=False,
        )
        quality_check_folder(cohort.caps, cohort.participants, Path(tmp) / "qc", progress=False)
        n = len(read_participants(cohort.participants))
        return (time.perf_counter() - start) / n


#: The settings of a group-mask job that decide how many steps it takes.
_EPOCH_FIELDS = ("max_epochs", "refine_epochs", "batch_size", "upsample", "area")


def job_seconds(kind: str, spec: dict[str, Any], config: StudyConfig, sizes: Sizes,
                unit: dict[str, float]) -> float:  # fmt: skip
    """The calibrated cost of one job."""
    t = config.train
    if kind == "data":
        return sizes.data_sessions * unit.get("data_session", 0.0)
    if kind == "train":
        steps = math.ceil(sizes.train / t.batch_size)
        return t.max_epochs * (steps * unit["train_step"] + sizes.validation * unit["infer_image"])
    if kind == "evaluate":
        n = sizes.test if spec["name"] == "test" else sizes.independent_baseline
        return n * unit["infer_image"]
    if kind == "group_mask":
        mask = config.mask if spec["cohort"] == "adni" else config.independent_mask
        own = {k: v for k, v in spec.get("mask", {}).items() if k in _EPOCH_FIELDS}
        mask = dataclasses.replace(mask, **own)  # the job's own settings (a grid point)
        images = sizes.train / 2 if spec["cohort"] == "adni" else sizes.independent_baseline / 2
        steps = math.ceil(images / max(mask.batch_size, 1))
        ratio = unit["mask_step"] / max(config.mask.batch_size, 1) * mask.batch_size
        # the first area (larger_areas run only where it does not fool the CNN; the
        # plan says so), with its fine stage, whose steps cost as the coarse ones do
        return mask.first_area_epochs * (steps * ratio + sizes.validation / 2 * unit["infer_image"])
    if kind == "sessions":
        s = config.session_mask
        slots = math.ceil(sizes.sessions_for_masks / max(s.batch_size, 1))
        return slots * s.max_epochs * unit["session_step"]
    raise ValueError(f"unknown job kind {kind!r}")


def calibration(
    out: Path, config: StudyConfig, shape: tuple[int, int, int], device: torch.device
) -> dict[str, float]:
    """The cached calibration of ``out``, measured now when its key changed."""
    import neuromask

    key = json.dumps([config.to_toml_mapping(), list(shape), str(device), neuromask.__version__],
                     sort_keys=True, default=str)  # fmt: skip
    path = out / "plan_calibration.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return dict(cached["unit"])
    unit = calibrate(config, shape, device)
    out.mkdir(parents=True, exist_ok=True)
    from neuromask.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": key, "unit": unit}, indent=2))
    return unit


def _split_tables(ws: Any) -> tuple[Any, ...] | None:
    from neuromask.io.layout import SplitLayout
    from neuromask.io.participants import read_participants
    from neuromask.train.splits_io import read_split_folder

    layout = SplitLayout(ws.split_dir)
    if not layout.splits():
        return None
    train, validation = read_split_folder(ws.split_dir, [0]).folds[0]
    test = read_participants(layout.find_test_tsv(), required=("diagnosis",))
    independent = ws.independent
    ind = None
    if independent is not None and Path(independent[1]).is_file():
        ind = read_participants(independent[1], required=("diagnosis",))
    return train, validation, test, ind


def _grid_shape(ws: Any, tables: tuple[Any, ...] | None) -> tuple[int, int, int]:
    """The study's grid: from its settings (synthetic data) or its first training image."""
    from neuromask.errors import MissingFileError
    from neuromask.io.caps import gm_map_path
    from neuromask.io.grid import clinica_grid
    from neuromask.io.nifti import read_grid

    if ws.config.data.synthetic:
        return clinica_grid(ws.config.data.voxel_size).shape
    if tables is None:
        raise MissingFileError(f"Split folder {ws.split_dir} holds no split to plan from.")
    first = tables[0].iloc[0]
    return read_grid(gm_map_path(ws.caps, first["participant_id"], first["session_id"])).shape


def _done(storage: str, keys: list[str]) -> dict[str, str]:
    import optuna

    from neuromask.studies.engine import job_status

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name="neuromask", storage=storage)
    except KeyError:  # no study in the storage yet
        return dict.fromkeys(keys, "missing")
    return job_status(study, keys)


@dataclass
class StudyPlanEstimate:
    jobs: Any  # one row per job: stage, job, kind, status, seconds
    stages: Any  # one row per stage: jobs, done, seconds, wall time with N workers
    peak_mb: dict[str, float]
    workers: int
    #: Whether the workers were counted as sharing this machine's CPU cores.
    shared_cores: bool = False

    @property
    def total_s(self) -> float:
        return float(self.stages["wall_s"].sum())


def estimate_study(names: list[str], ws: Any, storage: str, workers: int = 1) -> StudyPlanEstimate:
    """Every job of studies ``names`` in workspace ``ws``, with its state in ``storage`` and
    its calibrated cost, and each stage's wall time with ``workers`` workers. The studies
    run one after the other, each stage behind the one before (a stage ends when its
    longest job does); a job shared with an earlier study is listed there only."""
    import pandas as pd

    from neuromask.studies.plans import plan
    from neuromask.train.tensors import resolve_device

    listed: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for name in names:
        for stage in plan(ws, name).stages:
            for job in stage.jobs:
                if job.key not in seen:
                    seen.add(job.key)
                    listed.append((f"{name}: {stage.name}", job))
    device = resolve_device(ws.device)
    tables = _split_tables(ws)
    unit = calibration(ws.out, ws.config, _grid_shape(ws, tables), device)
    sizes = study_sizes(ws.config, tables)
    keys = [job.key for _, job in listed]
    local = storage.startswith("sqlite:///")
    exists = not local or Path(storage.removeprefix("sqlite:///")).is_file()
    status = _done(storage, keys) if exists else dict.fromkeys(keys, "missing")
    rows = [
        {"stage": stage, "job": job.key, "kind": job.spec["kind"], "status": status[job.key],
         "seconds": 0.0 if status[job.key] == "complete"
         else job_seconds(job.spec["kind"], job.spec, ws.config, sizes, unit)}
        for stage, job in listed
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    # Workers on this machine's CPU share the cores that the calibration already used:
    # they add no speed (the small preset on 2 cores: 714 s with 2 workers, 677 s with
    # one), so they count as one. On GPUs, or on other machines, each has its own.
    shared = device.type == "cpu" and local and workers > 1
    parallel = 1 if shared else workers
    summary = []
    for stage, group in table.groupby("stage", sort=False):
        todo = group["seconds"]
        wall = max(float(todo.max()), float(todo.sum()) / parallel)
        summary.append({"stage": stage, "jobs": len(group),
                        "done": int((group["status"] == "complete").sum()),
                        "cpu_s": float(todo.sum()), "wall_s": wall})  # fmt: skip
    peaks = {k.removesuffix("_peak_mb"): v for k, v in unit.items() if k.endswith("_peak_mb")}
    return StudyPlanEstimate(table, pd.DataFrame(summary), peaks, workers, shared)
