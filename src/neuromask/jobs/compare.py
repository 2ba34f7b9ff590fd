"""Comparing masks from files: ``neuromask compare MASK... --out OUT [--models MODEL_DIR...]``.

Writes, in OUT:

- ``roi_similarity.tsv``: the cosine similarity of the masks' ROI-density vectors, a
  square matrix whose first column and header are the mask paths as given;
- ``top_rois.tsv``: each mask's k densest ROIs with their densities;
- with ``model_dirs`` (one trained model per mask, same order): ``prob_cnn.tsv``, the
  square matrix of pair values (mean of both directions), and ``prob_cnn_pairs.tsv``,
  both directions of every pair. Model A's images are the correctly classified AD
  sessions of the validation set of the split it was trained on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuromask.errors import ParameterError
from neuromask.io.atlas import ATLAS_NAMES, Atlas, default_atlas, load_atlas, named_atlas
from neuromask.io.atomic import atomic_path
from neuromask.io.claim import check_not_an_input
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume
from neuromask.io.participants import write_tsv
from neuromask.jobs.trained_model import TrainedModel
from neuromask.metrics.prob_cnn import mean_off_diagonal, prob_cnn_matrix, symmetric_prob_cnn
from neuromask.metrics.roi import top_rois
from neuromask.metrics.similarity import cosine_matrix, roi_vectors


@dataclass
class Comparison:
    labels: list[str]
    roi_similarity: np.ndarray
    top_rois: pd.DataFrame
    #: P[a, b]: model a on its validation AD images masked with mask b (None without models).
    prob_cnn_directed: np.ndarray | None = None

    @property
    def prob_cnn(self) -> np.ndarray | None:
        if self.prob_cnn_directed is None:
            return None
        return symmetric_prob_cnn(self.prob_cnn_directed)

    def mean_roi_similarity(self) -> float:
        return mean_off_diagonal(self.roi_similarity)

    def mean_prob_cnn(self) -> float:
        return float("nan") if self.prob_cnn is None else mean_off_diagonal(self.prob_cnn)


def read_masks(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[np.ndarray], Grid]:
    """The masks, checked to lie on one grid (shape and affine) with values in [0, 1]."""
    if not paths:
        raise ParameterError("compare: give at least one mask file")
    masks: list[np.ndarray] = []
    grid: Grid | None = None
    for path in paths:
        mask, mask_grid = load_volume(path, grid, reference=str(paths[0]))
        if mask.min() < -1e-6 or mask.max() > 1 + 1e-6:
            raise ParameterError(
                f"{path} is not a mask: its values span [{mask.min():.3g}, {mask.max():.3g}], "
                "outside [0, 1]"
            )
        masks.append(mask)
        grid = grid or mask_grid
    assert grid is not None
    return masks, grid


def model_validation_images(
    model_dir: Path, device: str, cache_dir: str | os.PathLike[str] | None, progress: bool
) -> tuple[torch.nn.Module, torch.Tensor]:
    """A model and the correctly classified AD sessions of its split's validation set."""
    trained = TrainedModel.open(model_dir, device)
    inputs, _ = trained.validation_ad_sessions(cache_dir=cache_dir, progress=progress)
    return trained.model, inputs.images


def compare_masks(
    masks: list[np.ndarray],
    labels: list[str],
    atlas: Atlas,
    *,
    k: int = 5,
    models=None,
    images=None,
    mu: float = 1.0,
) -> Comparison:
    """The ROI similarity matrix, the top ROIs and (with models and images) prob_CNN."""
    if k < 1:
        raise ParameterError(f"compare: k must be at least 1, got {k}")
    similarity = cosine_matrix(roi_vectors(masks, atlas))
    tops = pd.concat(
        [top_rois(m, atlas, k).assign(mask=label) for m, label in zip(masks, labels, strict=True)],
        ignore_index=True,
    )[["mask", "rank", "roi_name", "density"]]
    directed = None
    if models is not None:
        directed = prob_cnn_matrix(models, images, masks, mu=mu)
    return Comparison(list(labels), similarity, tops, directed)


def compare_files(
    mask_paths: list[str],
    out: str | os.PathLike[str],
    *,
    model_dirs: list[str] | None = None,
    atlas_nifti: str | None = None,
    atlas_tsv: str | None = None,
    k: int = 5,
    mu: float = 1.0,
    device: str = "auto",
    cache_dir: str | None = None,
    progress: bool = True,
) -> Comparison:
    """Compare mask files and write the tables into ``out``."""
    if model_dirs and len(model_dirs) != len(mask_paths):
        raise ParameterError(
            f"--models needs one model folder per mask: got {len(model_dirs)} for "
            f"{len(mask_paths)} masks"
        )
    named = atlas_nifti is not None and str(atlas_nifti).lower() in (n.lower() for n in ATLAS_NAMES)
    if atlas_tsv is None and atlas_nifti is not None and not named:
        raise ParameterError(
            f"--atlas {atlas_nifti} needs --atlas-tsv (its ROI table), unless it names an "
            f"atlas: {', '.join(ATLAS_NAMES)}"
        )
    if atlas_tsv is not None and (atlas_nifti is None or named):
        raise ParameterError("--atlas-tsv goes with --atlas NIFTI (a labelled image)")
    check_not_an_input(Path(out), [*mask_paths, *(model_dirs or [])])
    masks, grid = read_masks(mask_paths)
    if named:
        atlas = named_atlas(str(atlas_nifti), grid)
    elif atlas_nifti is not None and atlas_tsv is not None:
        atlas = load_atlas(atlas_nifti, atlas_tsv, grid)
    else:
        atlas = default_atlas(grid)
    models = images = None
    if model_dirs:
        pairs = [model_validation_images(Path(d), device, cache_dir, progress) for d in model_dirs]
        models = [p[0] for p in pairs]
        images = [p[1] for p in pairs]
    result = compare_masks(
        masks, [str(p) for p in mask_paths], atlas, k=k, models=models, images=images, mu=mu
    )
    write_comparison(result, Path(out), settings={"atlas": atlas.name, "k": k, "mu": mu})
    return result


def _square(matrix: np.ndarray, labels: list[str]) -> pd.DataFrame:
    table = pd.DataFrame(matrix, columns=labels)
    table.insert(0, "mask", labels)
    return table


def write_comparison(result: Comparison, out: Path, settings: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_tsv(_square(result.roi_similarity, result.labels), out / "roi_similarity.tsv")
    write_tsv(result.top_rois, out / "top_rois.tsv")
    if result.prob_cnn_directed is not None:
        write_tsv(
            _square(symmetric_prob_cnn(result.prob_cnn_directed), result.labels),
            out / "prob_cnn.tsv",
        )
        d = result.prob_cnn_directed
        rows = [
            {
                "mask_a": result.labels[a],
                "mask_b": result.labels[b],
                "model_a_on_mask_b": d[a, b],
                "model_b_on_mask_a": d[b, a],
                "prob_cnn": (d[a, b] + d[b, a]) / 2,
            }
            for a in range(len(result.labels))
            for b in range(a + 1, len(result.labels))
        ]
        write_tsv(pd.DataFrame(rows), out / "prob_cnn_pairs.tsv")
    summary = {
        "masks": result.labels,
        "mean_roi_similarity": result.mean_roi_similarity(),
        "mean_prob_cnn": result.mean_prob_cnn() if result.prob_cnn is not None else None,
        **(settings or {}),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=True))
