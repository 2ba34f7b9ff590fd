"""Training every split and run of a split folder: ``neuromask train``.

The images of ``train_val.tsv`` are loaded once into one array; each split's training and
validation sets index into it. Runs are ``OUT/split-<k>/run-<r>/``; rerunning the same
command skips finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

import neuromask
from neuromask.data.dataset import load_gm_maps
from neuromask.errors import ParameterError
from neuromask.io.atomic import atomic_path
from neuromask.io.claim import check_not_an_input
from neuromask.io.layout import record_path, run_dir  # noqa: F401  (run_dir: old import path)
from neuromask.train.config import TrainConfig
from neuromask.train.splits_io import read_split_folder, row_indices, split_hashes
from neuromask.train.tensors import image_tensor, labels_of, normalize_images
from neuromask.train.trainer import RunResult, train_run


def run_seed(seed: int, run: int) -> int:
    """The seed of run ``run``: different runs differ, the same run is reproducible."""
    return int(np.random.SeedSequence([seed, run]).generate_state(1)[0])


def train_splits(
    caps: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    splits: list[int] | None = None,
    runs: int = 1,
    only_runs: list[int] | None = None,
    dartel_group: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> list[RunResult]:
    """Train ``runs`` runs of each split; returns one result per (split, run).

    ``only_runs`` trains just these run numbers (a study's job trains one run)."""
    config = config or TrainConfig()
    if runs < 1:
        raise ParameterError(f"--runs must be at least 1, got {runs}")
    folder = read_split_folder(split_dir, splits)
    data = load_gm_maps(
        caps, folder.train_val, dartel_group=dartel_group, cache_dir=cache_dir, progress=progress
    )
    images = normalize_images(np.asarray(data.images), config.normalization)
    x = image_tensor(images)
    y = torch.from_numpy(labels_of(folder.train_val, "train_val.tsv"))
    out = Path(out)
    check_not_an_input(out, [caps, split_dir])
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "neuromask_version": neuromask.__version__,
        "caps": record_path(caps, out),
        "split_dir": record_path(split_dir, out),
        "splits": sorted(folder.folds),
        "runs": runs,
        "train": config.to_dict(),
        "dartel_group": dartel_group,
        "grid": data.grid.to_dict(),
    }
    with atomic_path(out / "train.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))

    results = []
    for k, (train, validation) in folder.folds.items():
        train_idx = np.asarray(row_indices(folder.train_val, train))
        val_idx = np.asarray(row_indices(folder.train_val, validation))
        for r in range(runs) if only_runs is None else only_runs:
            folder_kr = run_dir(out, k, r)
            record = {
                "split": k,
                "run": r,
                "caps": record_path(caps, folder_kr),
                "split_dir": record_path(split_dir, folder_kr),
                "split_sha256": split_hashes(split_dir, k),
                "dartel_group": dartel_group,
                "grid": data.grid.to_dict(),
            }
            if progress:
                from rich.console import Console

                Console(stderr=True).print(
                    f"[bold]split {k}, run {r}[/bold] -> {run_dir(out, k, r)}"
                )
            results.append(
                train_run(
                    x,
                    y,
                    train_idx,
                    val_idx,
                    validation,
                    config,
                    run_dir(out, k, r),
                    run_seed=run_seed(config.seed, r),
                    record=record,
                    progress=progress,
                )
            )
    return results
