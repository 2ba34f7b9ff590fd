"""A CNN trained on shuffled labels: the data-randomisation test of Adebayo et al. (2018)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuromask.data.dataset import load_gm_maps
from neuromask.io.layout import record_path
from neuromask.train.config import train_config_from_record
from neuromask.train.model_folder import load_trained_model, read_model_record, training_paths
from neuromask.train.splits_io import read_split_folder
from neuromask.train.tensors import image_tensor, labels_of, normalize_images
from neuromask.train.trainer import train_run


def shuffled_label_model(
    model_dir: Path,
    out: Path,
    *,
    epochs: int = 0,
    seed: int = 0,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model's architecture and settings trained on its own training sessions with the
    diagnoses permuted (Adebayo et al.'s data randomisation test).

    The CNN is meant to memorise the random labels, so no early stopping: it trains
    ``epochs`` epochs (0: the model's ``max_epochs``) and keeps the epoch that fits the
    permuted labels best. Resumes from its checkpoint in ``out``.
    """
    record = read_model_record(model_dir)
    caps, split_dir, split = training_paths(record, model_dir)
    config = train_config_from_record(record["train"], str(model_dir / "config.json"))
    epochs = epochs or config.max_epochs
    config = dataclasses.replace(config, max_epochs=epochs, patience=epochs, device=device)
    train, _ = read_split_folder(split_dir, [split]).folds[split]
    train = train.reset_index(drop=True)
    data = load_gm_maps(
        caps,
        train,
        dartel_group=record.get("dartel_group"),
        cache_dir=cache_dir,
        progress=progress,
    )
    x = image_tensor(normalize_images(np.asarray(data.images), config.normalization))
    labels = labels_of(train)
    permuted = np.random.default_rng(seed).permutation(labels)
    shuffled = train.assign(diagnosis=np.where(permuted == 1, "AD", "CN"))
    every = np.arange(len(train))
    train_run(
        x,
        torch.as_tensor(permuted, dtype=torch.long),
        every,
        every,
        shuffled,
        config,
        out,
        run_seed=int(record.get("run_seed", 0)) + 1,
        record={
            "shuffled_labels_of": str(model_dir),
            "label_seed": seed,
            "fraction_changed": float(np.mean(permuted != labels)),
            "caps": record_path(caps, out),
            "split_dir": record_path(split_dir, out),
            **{k: record[k] for k in ("split", "split_sha256", "grid") if k in record},
        },
        progress=progress,
    )
    return load_trained_model(out)
