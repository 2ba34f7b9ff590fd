"""What each kind of study job does, given the workspace and the job's spec.

Every function returns early when its outputs are already complete, so a job that is
run again (after a crash, or by a second worker) does no work twice.
"""

from __future__ import annotations

import json
from typing import Any

from neuromask.io.atomic import atomic_path
from neuromask.io.layout import SplitLayout
from neuromask.io.participants import read_participants
from neuromask.studies.workspace import Workspace


def synthesize(ws: Workspace, spec: dict[str, Any]) -> None:
    """The two synthetic cohorts, their quality check and the ADNI-like cohort's split."""
    from neuromask.data.synthetic import SynthConfig, generate_cohort
    from neuromask.jobs.qc import quality_check_folder

    layout = ws.layout
    if layout.data_done.is_file():
        return
    d = ws.config.data
    common = {
        "voxel_size": d.voxel_size,
        "atrophy_heterogeneity": d.atrophy_heterogeneity,
        "atrophy_strength": d.atrophy_strength,
        "atrophy_blobs": d.atrophy_blobs,
    }
    adni = generate_cohort(
        SynthConfig(
            subjects_per_class=d.subjects_per_class,
            cohort="adni",
            qc_failures=3,  # segmentation failures for the quality check to catch
            atrophy_rois=d.atrophy_rois,
            seed=d.seed,
            **common,  # type: ignore[arg-type]
        ),
        layout.cohort("adni").root,
        overwrite=True,
        progress=ws.progress,
    )
    aibl = generate_cohort(
        SynthConfig(
            subjects_per_class=d.independent_subjects_per_class,
            sessions=(1, 2),
            cohort="aibl",
            qc_failures=2,
            atrophy_rois=tuple(adni.atrophy_rois),  # the same disease in both cohorts
            blob_seed=d.seed,
            seed=d.seed + 1,
            **common,  # type: ignore[arg-type]
        ),
        layout.cohort("aibl").root,
        overwrite=True,
        progress=ws.progress,
    )
    for name, cohort in (("adni", adni), ("aibl", aibl)):
        quality_check_folder(
            cohort.caps,
            cohort.participants,
            layout.qc(name).root,
            overwrite=True,
            progress=ws.progress,
        )
    _split(ws)
    with atomic_path(layout.data_done) as tmp:
        tmp.write_text(json.dumps({"atrophy_rois": adni.atrophy_rois}))


def _split(ws: Workspace) -> None:
    """The matched test set and the folds of the ADNI-like cohort's passed sessions."""
    from neuromask.data.split import SplitConfig, make_splits, write_splits

    d = ws.config.data
    split = make_splits(
        read_participants(ws.layout.qc("adni").passed),
        SplitConfig(
            test_subjects_per_class=d.test_subjects_per_class,
            p_threshold=d.p_threshold,
            folds=ws.config.study.folds,
            seed=d.seed + 2,
        ),
    )
    write_splits(split, ws.split_dir, overwrite=True)


def train(ws: Workspace, spec: dict[str, Any]) -> None:
    from neuromask.train.cross_validation import train_splits
    from neuromask.train.trainer import DONE

    split, run = spec["split"], spec["run"]
    if (ws.model_dir(split, run) / DONE).is_file():
        return
    train_splits(
        ws.caps,
        ws.split_dir,
        ws.layout.models,
        ws.config.train,
        splits=[split],
        runs=run + 1,
        only_runs=[run],
        cache_dir=ws.cache,
        progress=ws.progress,
    )


def evaluate(ws: Workspace, spec: dict[str, Any]) -> None:
    from neuromask.train.evaluate import evaluate_model

    model, name = ws.model_dir(spec["split"], spec["run"]), spec["name"]
    if (model / name / "metrics.json").is_file():
        return
    if name == "test":
        caps, tsv = ws.caps, SplitLayout(ws.split_dir).find_test_tsv()
    else:
        caps, tsv = ws.independent_baseline()
    evaluate_model(
        model,
        caps,
        tsv,
        name,
        overwrite=True,
        cache_dir=ws.cache,
        device=ws.device,
        progress=ws.progress,
    )


def group_mask(ws: Workspace, spec: dict[str, Any]) -> None:
    from neuromask.jobs.masks import group_mask_job

    split, run, cohort = spec["split"], spec["run"], spec["cohort"]
    config = ws.mask_config(spec)
    out = ws.mask_dir(split, run, cohort, config)
    if (out / "mask.nii.gz").is_file() and not (out / "checkpoint.pt").exists():
        return
    splits = SplitLayout(ws.split_dir)
    if cohort == "adni":
        caps, tsv = ws.caps, splits.find_tsv(split, "train")
    else:
        caps, tsv = ws.independent_baseline()
    # Early stopping watches the model's own validation set (ADNI-like) in both cases.
    group_mask_job(
        ws.model_dir(split, run),
        caps,
        tsv,
        out,
        config,
        validation_tsv=splits.find_tsv(split, "validation"),
        validation_caps=ws.caps,
        cache_dir=ws.cache,
        device=ws.device,
        progress=ws.progress,
    )


def sessions(ws: Workspace, spec: dict[str, Any]) -> None:
    from neuromask.jobs.masks import session_mask_job

    config = ws.mask_config(spec)
    session_mask_job(
        ws.model_dir(0, 0),
        ws.caps,
        ws.sessions_tsv(),
        ws.session_dir(config),
        config,
        cache_dir=ws.cache,
        device=ws.device,
        progress=ws.progress,
    )
