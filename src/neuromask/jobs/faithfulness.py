"""Faithfulness of a saved map to the CNN it explains: ``neuromask localize --model``.

The deletion, insertion and ROAD curves (:mod:`neuromask.metrics.faithfulness`) of one
map, on the first correctly classified AD sessions of the model's validation set, with
two references:

- ``mu``: the constant mu = 1 of the paper's masks (pure GM);
- ``healthy``: each session's healthy version, max(X, H), H a CN session of the model's
  training set (session i with CN session i mod K, as
  :class:`~neuromask.explain.reference.HealthyReference` pairs them). Insertion then
  starts from a brain a CNN has seen the like of, instead of one of pure GM that it
  calls healthy whatever is put back. ROAD then imputes each session's residual from
  its CN session H and adds H back (``healthy_road_auc``): on GM maps, imputing the
  raw values from their neighbours looks like atrophy to the CNN
  (:mod:`neuromask.metrics.faithfulness`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from neuromask.errors import ParameterError


def healthy_versions(sessions: np.ndarray, images: torch.Tensor) -> torch.Tensor:
    """Each image's healthy version max(X, H) on the CPU: image i with CN session i mod
    K, as :meth:`~neuromask.explain.reference.HealthyReference.paired` pairs them."""
    from neuromask.explain.reference import HealthyReference

    cpu = torch.device("cpu")
    n = len(images)
    paired = np.asarray(sessions)
    if len(paired):  # only the sessions used (none: HealthyReference says what is missing)
        paired = paired[np.arange(n) % len(paired)]
    return HealthyReference(paired, cpu).paired(images.to(cpu), range(n))


def paired_sessions(sessions: np.ndarray, count: int) -> torch.Tensor:
    """The CN session of each of ``count`` images (count, 1, X, Y, Z): image i with
    session i mod K, as :func:`healthy_versions` pairs them."""
    maps = np.asarray(sessions, dtype=np.float32)
    return torch.from_numpy(maps[np.arange(count) % len(maps)][:, None])


def faithfulness_areas(
    model: torch.nn.Module,
    images: torch.Tensor,
    relevance: np.ndarray,
    brain: np.ndarray,
    *,
    mu: float = 1.0,
    healthy_start: torch.Tensor | None = None,
    healthy_anatomy: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """``deletion_auc``, ``insertion_auc`` and ``road_auc`` of one map with ``mu`` as the
    reference and, given the images' healthy versions (:func:`healthy_versions`),
    ``healthy_deletion_auc`` and ``healthy_insertion_auc`` with them as the reference;
    given also their CN sessions (:func:`paired_sessions`), ``healthy_road_auc``: ROAD
    on the residual from them (`neuromask sanity`'s columns)."""
    from neuromask.metrics.faithfulness import faithfulness_curves

    areas = faithfulness_curves(model, images, relevance, brain, reference=mu, seed=seed).areas()
    if healthy_start is not None:
        healthy = faithfulness_curves(
            model, images, relevance, brain, reference=healthy_start, seed=seed,
            road=healthy_anatomy is not None, road_anatomy=healthy_anatomy,
        ).areas()  # fmt: skip
        areas["healthy_deletion_auc"] = healthy["deletion_auc"]
        areas["healthy_insertion_auc"] = healthy["insertion_auc"]
        if healthy_anatomy is not None:
            areas["healthy_road_auc"] = healthy["road_auc"]
    return areas


@dataclass(frozen=True)
class MapFaithfulness:
    """The areas of each curve per reference (``mu_insertion_auc``, ...), and the
    sessions they were measured on."""

    areas: dict[str, float]
    sessions: list[str]


def map_faithfulness(
    model_dir: str | os.PathLike[str],
    relevance: np.ndarray,
    *,
    images: int = 6,
    device: str = "auto",
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MapFaithfulness:
    """The faithfulness areas of ``relevance`` (on the model's grid) for the model of
    ``model_dir``, on the first ``images`` correctly classified validation AD sessions."""
    from neuromask.jobs.trained_model import TrainedModel, brain_mask_of

    if images < 1:
        raise ParameterError(f"--images must be at least 1, got {images}")
    trained = TrainedModel.open(model_dir, device)
    inputs, _ = trained.validation_ad_sessions(cache_dir=cache_dir, progress=False)
    grid = tuple(inputs.images.shape[2:])
    if tuple(np.shape(relevance)) != grid:
        raise ParameterError(
            f"the map's grid {tuple(np.shape(relevance))} is not the model's input grid {grid}"
        )
    x = inputs.images[:images]
    sessions = trained.training_cn_sessions(seed, cache_dir=cache_dir)
    measured = faithfulness_areas(
        trained.model, x, relevance, brain_mask_of(inputs.data.images),
        healthy_start=healthy_versions(sessions, x),
        healthy_anatomy=paired_sessions(sessions, len(x)), seed=seed,
    )  # fmt: skip
    # mu's deletion and insertion are named for their reference here
    areas = {
        f"mu_{k}" if k in ("deletion_auc", "insertion_auc") else k: v for k, v in measured.items()
    }
    scored = inputs.sessions.iloc[: len(x)]
    pairs = zip(scored["participant_id"], scored["session_id"], strict=True)
    labels = [f"{p} {s}" for p, s in pairs]
    return MapFaithfulness(areas, labels)
