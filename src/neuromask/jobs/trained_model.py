"""A trained model with what every job needs of it: the frozen CNN on its device, its
record, the data it was trained on, and the AD sessions it classifies correctly.

This is the one way the jobs (masks, compare, sanity) and the studies load a model and
its validation AD images.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from neuromask.data.dataset import GMDataset, load_gm_maps
from neuromask.errors import NeuromaskError
from neuromask.io.participants import read_participants
from neuromask.models.inference import class_probabilities, freeze
from neuromask.train.model_folder import (  # noqa: F401  (training_data: old import path)
    load_model,
    load_trained_model,
    model_grid,
    recorded_validation_tsv,
    require_model_grid,
    training_data,
    training_paths,
    training_tables,
)
from neuromask.train.tensors import image_tensor, normalize_images, resolve_device

AD = 1


class NoSessionToMaskError(NeuromaskError, ValueError):
    """No AD session of the table is classified correctly by the CNN."""


@dataclass
class MaskInputs:
    """The images of the correctly classified AD sessions, ready for the explainer."""

    images: torch.Tensor
    sessions: pd.DataFrame
    selection: pd.DataFrame
    data: GMDataset
    #: P(AD) of each kept session before masking.
    p_ad: np.ndarray


def brain_mask_of(images: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Voxels where the mean image exceeds ``threshold``, dilated by one voxel."""
    mean = np.asarray(images, dtype=np.float32).mean(axis=0)
    return np.asarray(ndimage.binary_dilation(mean > threshold, iterations=1))


def _sessions_of(
    record: dict[str, Any],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    diagnosis: str,
    if_none: str,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
    keep: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, GMDataset, np.ndarray]:
    """The sessions of ``tsv`` with ``diagnosis``, their GM maps (checked against the
    model's grid) and those maps normalised as the model's inputs are; ``if_none`` ends
    the error raised when there is none. ``keep``: the rows (positions) of those
    sessions to load, when not all."""
    sessions = read_participants(tsv, required=("diagnosis",))
    chosen = sessions[sessions["diagnosis"] == diagnosis].reset_index(drop=True)
    if chosen.empty:
        raise NoSessionToMaskError(f"{tsv} {if_none}")
    if keep is not None:
        chosen = chosen.iloc[keep(chosen)].reset_index(drop=True)
    data = load_gm_maps(
        caps,
        chosen,
        dartel_group=record.get("dartel_group"),
        cache_dir=cache_dir,
        progress=progress,
    )
    require_model_grid(record, data.grid, what=f"The images of {tsv}")
    normalised = normalize_images(np.asarray(data.images), record["train"]["normalization"])
    return chosen, data, normalised


def load_ad_sessions(
    model: torch.nn.Module,
    record: dict[str, Any],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    explainer: object = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> MaskInputs:
    """The AD sessions of ``tsv`` that the model classifies correctly (P(AD) >= 0.5).

    ``model`` is scored where its parameters are. ``explainer`` is ignored (older
    versions scored the sessions through one) and deprecated.
    """
    if explainer is not None:
        warnings.warn(
            "load_ad_sessions: the explainer argument is ignored and will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
    ad, data, normalised = _sessions_of(
        record, caps, tsv, "AD", "holds no AD session to mask.", cache_dir, progress
    )
    images = image_tensor(normalised)
    p_ad = class_probabilities(model, images, target=AD)
    selection = ad[["participant_id", "session_id"]].assign(p_ad=p_ad, correct=p_ad >= 0.5)
    keep = np.flatnonzero(p_ad >= 0.5)
    if keep.size == 0:
        raise NoSessionToMaskError(
            f"None of the {len(ad)} AD sessions of {tsv} is classified as AD by the model "
            "(P(AD) >= 0.5); there is nothing to mask."
        )
    return MaskInputs(
        images[keep], ad.iloc[keep].reset_index(drop=True), selection, data, p_ad[keep]
    )


def cn_reference(
    trained: TrainedModel,
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The mean GM map (X, Y, Z) of the cognitively normal sessions of ``tsv``, normalised
    as the model's inputs are: the healthy reference that deleted voxels take with mask
    setting ``reference = "cn_mean"``."""
    _, _, images = _sessions_of(
        trained.record,
        caps,
        tsv,
        "CN",
        "holds no CN session: the 'cn_mean' reference needs cognitively normal sessions",
        cache_dir,
        progress,
    )
    return np.asarray(images, dtype=np.float32).mean(axis=0)


@dataclass
class TrainedModel:
    """A trained CNN (frozen, on its device) and its record: a neuromask run folder's
    ``config.json``, or what :func:`~neuromask.models.maps.load_maps_model` reads of a
    ClinicaDL MAPS. ``caps``: the CAPS folder a command was given, which stands in for a
    MAPS's recorded one when that is not on this machine."""

    folder: Path
    model: torch.nn.Module
    record: dict[str, Any]
    caps: Path | None = None

    @classmethod
    def open(
        cls,
        model_dir: str | os.PathLike[str],
        device: str = "auto",
        caps: str | os.PathLike[str] | None = None,
    ) -> TrainedModel:
        model, record = load_model(model_dir)
        folder, frozen = Path(model_dir), freeze(model, resolve_device(device))
        return cls(folder, frozen, record, Path(caps) if caps is not None else None)

    @property
    def is_maps(self) -> bool:
        return self.record.get("source") == "clinicadl"

    def training_tables(self) -> tuple[Path, Path]:
        """The CAPS folder and the training table of the split the model was trained on."""
        return training_tables(self.record, self.folder, self.caps)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def training_paths(self) -> tuple[Path, Path, int]:
        """The CAPS folder, split folder and split a neuromask model was trained on."""
        return training_paths(self.record, self.folder)

    def validation_tsv(self) -> Path | None:
        """Its split's validation table, when the record names the split folder; an error
        when that table is gone or changed since the training."""
        if not self.is_maps and ("split_dir" not in self.record or "split" not in self.record):
            return None
        return recorded_validation_tsv(self.record, self.folder)

    def ad_sessions(
        self,
        caps: str | os.PathLike[str],
        tsv: str | os.PathLike[str],
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> MaskInputs:
        """The AD sessions of ``tsv`` that this model classifies correctly."""
        return load_ad_sessions(
            self.model, self.record, caps, tsv, cache_dir=cache_dir, progress=progress
        )

    def training_cn_reference(
        self, *, cache_dir: str | os.PathLike[str] | None = None, progress: bool = False
    ) -> np.ndarray:
        """:func:`cn_reference` of the CN sessions this model was trained on (its split's
        training table)."""
        caps, tsv = self.training_tables()
        return cn_reference(self, caps, tsv, cache_dir=cache_dir, progress=progress)

    def training_cn_sessions(
        self,
        seed: int = 0,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """The CN sessions (K, X, Y, Z) this model was trained on, normalised as its
        inputs are, one per subject and at most
        :data:`~neuromask.explain.reference.MAX_HEALTHY_SESSIONS` (drawn with ``seed``):
        what deleted voxels are restored to with mask setting ``reference = "healthy"``."""
        from neuromask.explain.reference import healthy_subset

        caps, tsv = self.training_tables()
        _, _, images = _sessions_of(
            self.record,
            caps,
            tsv,
            "CN",
            "holds no CN session: the 'healthy' reference needs cognitively normal sessions",
            cache_dir,
            progress,
            keep=lambda cn: healthy_subset(len(cn), cn["participant_id"].tolist(), seed),
        )
        return np.asarray(images, dtype=np.float32)

    def validation_ad_sessions(
        self, *, cache_dir: str | os.PathLike[str] | None = None, progress: bool = True
    ) -> tuple[MaskInputs, Path]:
        """The correctly classified AD sessions of its split's validation set, and that
        table."""
        caps, _ = self.training_tables()
        tsv = recorded_validation_tsv(self.record, self.folder)
        return self.ad_sessions(caps, tsv, cache_dir=cache_dir, progress=progress), tsv


def validation_ad_sessions(
    model_dir: str | os.PathLike[str],
    device: str = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict[str, Any], MaskInputs, Path]:
    """A trained model (frozen, on ``device``), its record, the correctly classified AD
    sessions of its split's validation set, and that validation TSV."""
    trained = TrainedModel.open(model_dir, device)
    inputs, tsv = trained.validation_ad_sessions(cache_dir=cache_dir, progress=progress)
    return trained.model, trained.record, inputs, tsv
