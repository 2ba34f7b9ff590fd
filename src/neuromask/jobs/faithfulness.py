"""Faithfulness of a saved map to the CNN it explains: ``neuromask localize --model``.

The deletion, insertion and ROAD curves (:mod:`neuromask.metrics.faithfulness`) of one
map, on the first correctly classified AD sessions of the model's validation set, with
two references:

- ``mu``: the constant mu = 1 of the paper's masks (pure GM);
- ``healthy``: each session's healthy version, max(X, H), H a CN session of the model's
  training set (session i with CN session i mod K, as
  :class:`~neuromask.explain.reference.HealthyReference` pairs them). Insertion then
  starts from a brain a CNN has seen the like of, instead of one of pure GM that it
  calls healthy whatever is put back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from neuromask.errors import ParameterError


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
    from neuromask.explain.reference import HealthyReference
    from neuromask.jobs.trained_model import TrainedModel, brain_mask_of
    from neuromask.metrics.faithfulness import faithfulness_curves

    if images < 1:
        raise ParameterError(f"--images must be at least 1, got {images}")
    trained = TrainedModel.open(model_dir, device)
    inputs, _ = trained.validation_ad_sessions(cache_dir=cache_dir, progress=False)
    grid = tuple(inputs.images.shape[2:])
    if tuple(np.shape(relevance)) != grid:
        raise ParameterError(
            f"the map's grid {tuple(np.shape(relevance))} is not the model's input grid {grid}"
        )
    brain = brain_mask_of(inputs.data.images)
    x = inputs.images[:images]
    healthy = HealthyReference(
        trained.training_cn_sessions(seed, cache_dir=cache_dir), trained.device
    )
    areas: dict[str, float] = {}
    for name, reference, road in (
        ("mu", 1.0, True),
        ("healthy", healthy.paired(x, range(len(x))).cpu(), False),
    ):
        curves = faithfulness_curves(
            trained.model, x, relevance, brain, reference=reference, seed=seed, road=road
        )
        for key, value in curves.areas().items():
            if not np.isnan(value):
                areas[key if key == "road_auc" else f"{name}_{key}"] = value
    sessions = inputs.sessions.iloc[: len(x)]
    pairs = zip(sessions["participant_id"], sessions["session_id"], strict=True)
    labels = [f"{p} {s}" for p, s in pairs]
    return MapFaithfulness(areas, labels)
