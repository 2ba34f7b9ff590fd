"""How well a mask or an attribution map finds a synthetic cohort's ground truth.

The relevance of a voxel is 1 − m for a mask, and |a| for an attribution map. The truth
is the set of atrophied AAL2 ROIs that the cohort's ``ground_truth/atrophy_rois.tsv``
lists; its voxels are those ROIs' voxels. Scores:

- ``roi_precision_at_k`` / ``roi_recall_at_k``: the k ROIs of highest mean relevance,
  against the atrophied ROIs (precision: share of the k that are atrophied; recall:
  share of the atrophied ROIs among the k);
- ``voxel_auc``: ROC AUC of the relevance, over the atlas's labelled (brain) voxels, for
  telling the atrophied ROIs' voxels from the rest;
- ``mass_accuracy``: the share of the total relevance inside the atrophied ROIs
  (relevance mass accuracy); NaN when the map has no relevance at all.

For a cohort whose atrophy is shaped as blobs across ROI boundaries (``synth
--atrophy-blobs``), the voxel-level scores use the voxel truth instead of the ROIs'
voxels (:func:`read_truth_voxels`): the atrophy map at half its peak or above.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from neuromask.errors import MissingFileError, ParameterError
from neuromask.io.atlas import Atlas
from neuromask.io.grid import Grid
from neuromask.metrics.roi import roi_means


@dataclass(frozen=True)
class LocalizationScores:
    k: int
    roi_precision_at_k: float
    roi_recall_at_k: float
    voxel_auc: float
    mass_accuracy: float
    top_rois: tuple[str, ...]
    truth_rois: tuple[str, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_rois"], d["truth_rois"] = list(self.top_rois), list(self.truth_rois)
        return d


def relevance_of(values: np.ndarray, kind: str) -> np.ndarray:
    """1 − m for a mask (values must lie in [0, 1]), |a| for an attribution map."""
    values = np.asarray(values, dtype=np.float64)
    if kind == "mask":
        if values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise ParameterError(
                f"a mask must lie in [0, 1], got values in [{values.min():.3g}, {values.max():.3g}]; "
                "score an attribution map with --attribution"
            )
        return 1.0 - values
    if kind == "attribution":
        return np.abs(values)
    raise ParameterError(f"kind must be 'mask' or 'attribution', got {kind!r}")


def localization_scores(
    values: np.ndarray,
    atlas: Atlas,
    truth_rois: list[str],
    *,
    k: int = 5,
    kind: str = "mask",
    truth_voxels: np.ndarray | None = None,
) -> LocalizationScores:
    """Scores of a mask or attribution map against the truth (see the module's text);
    ``truth_voxels`` (bool, on the atlas's grid) replaces the ROIs' voxels as the truth
    of the voxel-level scores."""
    if k < 1:
        raise ParameterError(f"k must be at least 1, got {k}")
    if np.asarray(values).shape != atlas.labels.shape:
        raise ParameterError(
            f"map shape {np.asarray(values).shape} differs from the atlas grid {atlas.labels.shape}"
        )
    relevance = relevance_of(values, kind)
    labels = atlas.labels
    truth_rois = [str(n) for n in truth_rois]
    unknown = sorted(set(truth_rois) - set(atlas.names))
    if unknown:
        raise ParameterError(f"ground-truth ROIs not in the atlas: {', '.join(unknown)}")
    means = roi_means(relevance, atlas).dropna()  # ROIs without voxels left out
    top = means.sort_values(ascending=False, kind="stable").head(k).index.tolist()
    hits = len(set(top) & set(truth_rois))
    brain = labels > 0
    inside = atlas.mask(truth_rois) if truth_voxels is None else np.asarray(truth_voxels, bool)
    if inside.shape != labels.shape:
        raise ParameterError(
            f"truth_voxels {inside.shape} differ from the atlas grid {labels.shape}"
        )
    y = inside[brain]
    auc = float(roc_auc_score(y, relevance[brain])) if 0 < y.sum() < y.size else float("nan")
    total = float(relevance.sum())
    mass = float(relevance[inside].sum() / total) if total > 0 else float("nan")
    return LocalizationScores(
        k=k,
        roi_precision_at_k=hits / len(top),
        roi_recall_at_k=hits / len(truth_rois),
        voxel_auc=auc,
        mass_accuracy=mass,
        top_rois=tuple(top),
        truth_rois=tuple(truth_rois),
    )


def read_truth_rois(truth_dir: str | os.PathLike[str]) -> list[str]:
    """The atrophied ROI names of a synthetic cohort's ground-truth folder."""
    path = Path(truth_dir) / "atrophy_rois.tsv"
    if not path.is_file():
        raise MissingFileError(
            f"{path} does not exist; --truth takes the ground_truth folder that "
            "`neuromask synth` writes"
        )
    return pd.read_csv(path, sep="\t")["roi_name"].astype(str).tolist()


def read_truth_voxels(truth_dir: str | os.PathLike[str], grid: Grid) -> np.ndarray | None:
    """The voxel-level truth of a blob-shaped cohort (bool, on ``grid``), or None for a
    cohort whose truth is whole ROIs."""
    from neuromask.data.atrophy import truth_voxels
    from neuromask.io.layout import TruthLayout
    from neuromask.io.nifti import load_volume

    layout = TruthLayout(Path(truth_dir))
    if not layout.record.is_file():
        return None
    settings = json.loads(layout.record.read_text()).get("config", {})
    if not settings.get("atrophy_blobs"):
        return None
    atrophy_map, _ = load_volume(layout.atrophy_map, grid, reference="the scored map")
    return truth_voxels(atrophy_map)


@dataclass(frozen=True)
class GroundTruth:
    """A synthetic cohort's truth: its atrophied ROIs and, for blob-shaped atrophy, its
    atrophied voxels."""

    rois: list[str]
    voxels: np.ndarray | None = None

    def scores(
        self, values: np.ndarray, atlas: Atlas, *, k: int = 5, kind: str = "mask"
    ) -> LocalizationScores:
        return localization_scores(
            values, atlas, self.rois, k=k, kind=kind, truth_voxels=self.voxels
        )


def read_ground_truth(truth_dir: str | os.PathLike[str], grid: Grid) -> GroundTruth:
    """The ground truth in ``truth_dir`` (a synthetic cohort's ``ground_truth`` folder),
    its atrophy map checked to lie on ``grid``."""
    from neuromask.io.layout import TruthLayout
    from neuromask.io.nifti import read_grid

    atrophy_map = TruthLayout(Path(truth_dir)).atrophy_map
    if atrophy_map.is_file():
        grid.require_match(read_grid(atrophy_map), what=str(atrophy_map), reference="the maps")
    return GroundTruth(read_truth_rois(truth_dir), read_truth_voxels(truth_dir, grid))
