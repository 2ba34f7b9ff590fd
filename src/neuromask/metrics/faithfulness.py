"""Faithfulness of a relevance map to the CNN: deletion, insertion and ROAD curves.

A relevance map ranks the brain's voxels. For fractions q of the brain's voxels (0 to
20 % by default), the top-ranked q are changed and the CNN's mean P(AD) is recorded:

- **deletion** (Petsiuk et al. 2018, RISE): the top q take the reference value; a
  faithful map makes P(AD) fall fast (a low area);
- **insertion**: every brain voxel starts at the reference and the top q get their
  values back; a faithful map makes P(AD) rise fast (a high area);
- **ROAD** (Rong et al. 2022): deletion, but the removed voxels are imputed from their
  neighbours (noisy linear imputation: each removed voxel is the mean of its six
  neighbours, one sparse linear system per fraction for all the images,
  :mod:`neuromask.metrics.imputation`, plus Gaussian noise), so that the
  shape of what was removed carries no signal of its own. A deletion curve that fills
  voxels with the mask's own reference rewards exactly what a mask was optimised for,
  adversarial speckle included; judge maps on insertion and ROAD rather than deletion
  alone;
- **ROAD on a healthy anatomy** (``road_anatomy``): on gray-matter maps, imputing a
  region from its neighbours blurs the cortex into white matter and CSF, which lowers
  its GM as atrophy does. On the localisation suite's cohorts, imputing the truly
  atrophied 5 % of the brain so turned CN sessions into AD (P(AD) 0.84 to 0.997;
  ``benchmarks/road_imputation.py``), and the ground truth scored as a map got a ROAD
  area within 0.001 of the worst method's. Given an anatomy A per image (a CN session H, paired as the
  healthy reference pairs them), the imputation runs on the residual X - A and A is
  added back: A + imputed(X - A). A removed region then takes a healthy brain's
  anatomy shifted by its surroundings' deviation from it: imputing the truth left CN
  sessions CN (P(AD) at most 0.002) and brought AD sessions to 0.005 to 0.06, while
  removing random voxels left them AD, as ROAD intends.

Voxels outside the brain are never changed. Areas are the mean of each curve over the
fractions (the trapezoidal area divided by the range of q).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuromask.errors import ParameterError
from neuromask.metrics.imputation import neighbour_imputations
from neuromask.models.inference import class_probabilities

#: The fractions of brain voxels changed, from none to a fifth.
DEFAULT_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Mean P(target) at each fraction of the top-ranked brain voxels changed."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    road: np.ndarray

    def areas(self) -> dict[str, float]:
        """``deletion_auc`` (lower is better), ``insertion_auc`` (higher is better) and
        ``road_auc`` (lower is better): the mean of each curve over the fractions."""
        q = self.fractions
        span = float(q[-1] - q[0])

        def area(curve: np.ndarray) -> float:
            return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(q)))

        return {
            f"{name}_auc": area(curve) / span
            for name, curve in (
                ("deletion", self.deletion),
                ("insertion", self.insertion),
                ("road", self.road),
            )
        }


def ranked_brain_voxels(relevance: np.ndarray, brain: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat indices of the brain's voxels, most relevant first; equal values in a random
    order drawn from ``seed``.

    A map that gives most voxels the same value (a mask deletes a few per cent of the
    brain and leaves the rest at exactly m = 1) would otherwise hand the curves its ties
    in memory order: whole sagittal slabs, one side of the brain first, which helps or
    hurts the map by where the slabs fall rather than by what it ranks."""
    inside = np.flatnonzero(np.asarray(brain, dtype=bool).ravel())
    values = np.asarray(relevance, dtype=np.float64).ravel()[inside]
    shuffle = np.random.default_rng([seed, 31]).random(inside.size)
    return inside[np.lexsort((shuffle, -values))]


def faithfulness_curves(
    model: torch.nn.Module,
    images: torch.Tensor,
    relevance: np.ndarray,
    brain: np.ndarray,
    *,
    reference: float | np.ndarray | torch.Tensor = 1.0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    target: int = 1,
    road_noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 8,
    road: bool = True,
    road_anatomy: np.ndarray | torch.Tensor | None = None,
) -> FaithfulnessCurves:
    """Deletion, insertion and ROAD curves of one relevance map (X, Y, Z) on ``images``
    (N, 1, X, Y, Z), for ``model``'s P(``target``).

    ``reference``: the value of a deleted voxel and of a not-yet-inserted one: one
    number (the masks' mu) or one image per image (N, 1, X, Y, Z), such as the healthy
    reference's max(X, H) (:meth:`neuromask.explain.reference.HealthyReference.paired`).
    ``road_noise``: the SD of the noise added to imputed voxels; the noise and the order
    of tied relevance values are drawn from ``seed``. ``road = False`` leaves the ROAD
    curve out (NaN), which saves its linear solves when only the reference changes.
    ``road_anatomy``: one image per image (N, 1, X, Y, Z), such as a CN session each;
    ROAD then imputes the residual X - A from its neighbours and adds A back (above).
    """
    grid = tuple(images.shape[2:])
    if np.shape(relevance) != grid or np.shape(brain) != grid:
        raise ParameterError(
            f"faithfulness: relevance {np.shape(relevance)} and brain {np.shape(brain)} must "
            f"lie on the images' grid {grid}"
        )
    q = np.asarray(fractions, dtype=np.float64)
    if q.ndim != 1 or q.size < 2 or np.any(np.diff(q) <= 0) or q[0] < 0 or q[-1] > 1:
        raise ParameterError(
            f"faithfulness: fractions must rise strictly within [0, 1], got {list(fractions)}"
        )
    order = ranked_brain_voxels(relevance, brain, seed)
    base = images.detach().cpu().to(torch.float32).numpy()
    if isinstance(reference, int | float):
        fill = np.full(base.shape, float(reference), dtype=np.float32)
    else:
        fill = _images_like(reference, base.shape, "reference")
    anatomy = None if road_anatomy is None else _images_like(road_anatomy, base.shape, "anatomy")
    brain_flat = np.asarray(brain, dtype=bool).ravel()
    rng = np.random.default_rng(seed)
    curves: dict[str, list[float]] = {"deletion": [], "insertion": [], "road": []}

    def score(batch: np.ndarray) -> float:
        x = torch.from_numpy(batch.astype(np.float32))
        return float(np.mean(class_probabilities(model, x, target=target, batch_size=batch_size)))

    for fraction in q:
        top = np.zeros(base[0, 0].size, dtype=bool)
        top[order[: int(round(fraction * order.size))]] = True
        not_inserted = brain_flat & ~top
        deleted, inserted = base.copy(), base.copy()
        for i in range(base.shape[0]):
            flat_del, flat_ins = deleted[i, 0].reshape(-1), inserted[i, 0].reshape(-1)
            flat_fill = fill[i, 0].reshape(-1)
            flat_del[top] = flat_fill[top]
            flat_ins[not_inserted] = flat_fill[not_inserted]
        if not top.any():  # nothing removed: deletion and ROAD see the images as they are
            as_is = score(base)
            curves["deletion"].append(as_is)
            curves["road"].append(as_is if road else float("nan"))
        else:
            curves["deletion"].append(score(deleted))
            imputed = (
                _road_imputation(base, anatomy, top.reshape(grid), road_noise, rng)
                if road
                else None
            )
            curves["road"].append(float("nan") if imputed is None else score(imputed))
        curves["insertion"].append(score(inserted))
    return FaithfulnessCurves(
        q, *(np.asarray(curves[k]) for k in ("deletion", "insertion", "road"))
    )


def _images_like(
    images: np.ndarray | torch.Tensor, shape: tuple[int, ...], what: str
) -> np.ndarray:
    """``images`` as float32 (N, 1, X, Y, Z), checked to have ``shape``."""
    out = np.asarray(torch.as_tensor(images).detach().cpu(), dtype=np.float32)
    if out.shape != shape:
        raise ParameterError(
            f"faithfulness: the {what} images {out.shape} must match the images {shape}"
        )
    return out


def _road_imputation(
    images: np.ndarray,
    anatomy: np.ndarray | None,
    removed: np.ndarray,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """ROAD's imputation of ``removed`` in ``images`` (N, 1, X, Y, Z), one linear system
    for all; with an ``anatomy`` (the same shape), of the residual from it."""
    if anatomy is None:
        return neighbour_imputations(images[:, 0], removed, noise=noise, rng=rng)[:, None]
    residual = neighbour_imputations(images[:, 0] - anatomy[:, 0], removed, noise=noise, rng=rng)
    out = np.array(images, dtype=np.float64)
    out[:, 0][:, removed] = anatomy[:, 0][:, removed] + residual[:, removed]
    return out
