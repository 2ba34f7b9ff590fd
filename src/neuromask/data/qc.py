"""Quality check of t1-volume GM maps, after the paper and ClinicaDL.

The paper's step 1 (the maximum rule): a map whose maximum is below 0.95 is rejected; a
well segmented map always has voxels of near-certain gray matter.
ClinicaDL's non-zero rule (not the paper's step 2): the fraction of non-zero voxels must lie in [0.15, 0.50]; a larger
fraction means non-brain tissue was segmented as GM, a smaller one a truncated map.
Before both: a probability map's values lie in [0, 1]; a map outside that range (beyond
``RANGE_TOLERANCE``: int16 data scaled by 1000, a map multiplied by a factor) is
rejected, since every score computed from it would be meaningless. Modulated maps
(DARTEL, ``modulated-on``) are scaled by the deformation's Jacobian and may exceed 1;
the range rule does not apply to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuromask.errors import ParameterError
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume
from neuromask.progress import track

#: How far outside [0, 1] a GM probability may lie (rounding of stored data).
RANGE_TOLERANCE = 1e-3


def outside_unit_range(gm: np.ndarray) -> str:
    """Why ``gm`` is not a probability map (its values leave [0, 1]), or ""."""
    low, high = float(np.min(gm)), float(np.max(gm))
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        return f"values span [{low:.3g}, {high:.3g}], outside the probabilities' [0, 1]"
    return ""


@dataclass(frozen=True)
class QCThresholds:
    """Rejection thresholds. Defaults: the paper's 0.95 and ClinicaDL's 15 % to 50 %."""

    min_max_gm: float = 0.95
    min_nonzero: float = 0.15
    max_nonzero: float = 0.50

    def __post_init__(self) -> None:
        if not 0 < self.min_max_gm <= 1:
            raise ParameterError(
                f"QCThresholds: min_max_gm must be in (0, 1], got {self.min_max_gm}"
            )
        if not 0 <= self.min_nonzero < self.max_nonzero <= 1:
            raise ParameterError(
                "QCThresholds: need 0 <= min_nonzero < max_nonzero <= 1, "
                f"got {self.min_nonzero} and {self.max_nonzero}"
            )


def qc_metrics(gm: np.ndarray) -> dict[str, float]:
    """The metrics of one GM map: its maximum and its fraction of non-zero voxels."""
    return {
        "min_gm": float(gm.min()),
        "max_gm": float(gm.max()),
        "nonzero_fraction": float(np.count_nonzero(gm) / gm.size),
    }


def qc_decision(
    metrics: dict[str, float], thresholds: QCThresholds, *, probability: bool = True
) -> tuple[bool, str]:
    """Whether a map passes, and why not (empty when it passes). ``probability``: the map
    is an unmodulated probability map, whose values must lie in [0, 1]."""
    reasons = []
    low, high = metrics.get("min_gm", 0.0), metrics["max_gm"]
    if probability and (low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE):
        reasons.append(f"values span [{low:.3g}, {high:.3g}], outside [0, 1]")
    if metrics["max_gm"] < thresholds.min_max_gm:
        reasons.append(f"max_gm {metrics['max_gm']:.3f} < {thresholds.min_max_gm:g}")
    nz = metrics["nonzero_fraction"]
    if nz < thresholds.min_nonzero:
        reasons.append(f"nonzero_fraction {nz:.3f} < {thresholds.min_nonzero:g}")
    if nz > thresholds.max_nonzero:
        reasons.append(f"nonzero_fraction {nz:.3f} > {thresholds.max_nonzero:g}")
    return not reasons, "; ".join(reasons)


def run_qc(
    caps: str | os.PathLike[str],
    sessions: pd.DataFrame,
    thresholds: QCThresholds | None = None,
    *,
    dartel_group: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Quality-check every session of ``sessions`` (a validated participants table).

    Returns the table with the columns ``max_gm``, ``nonzero_fraction``, ``qc_pass`` and
    ``qc_reason`` added, and ``gm_path``. Every image must share the first one's grid.
    """
    thresholds = thresholds or QCThresholds()
    grid: Grid | None = None
    first = ""
    records = []
    rows = list(sessions.itertuples(index=False))
    for row in track(rows, "Quality check", enabled=progress):
        path = gm_map_path(caps, row.participant_id, row.session_id, dartel_group)
        gm, image_grid = load_volume(path, grid, reference=f"the first image ({first})")
        if grid is None:
            grid, first = image_grid, str(path)
        metrics = qc_metrics(gm)
        passed, reason = qc_decision(metrics, thresholds, probability=dartel_group is None)
        records.append({**metrics, "qc_pass": passed, "qc_reason": reason, "gm_path": str(path)})
    return pd.concat([sessions.reset_index(drop=True), pd.DataFrame(records)], axis=1)


def qc_summary(qc: pd.DataFrame) -> pd.DataFrame:
    """Counts of passed and rejected sessions, per diagnosis when the column exists."""
    by = ["diagnosis"] if "diagnosis" in qc.columns else []
    table = (
        qc.assign(rejected=~qc["qc_pass"], passed=qc["qc_pass"])
        .groupby(by or (lambda _: "all"))[["passed", "rejected"]]
        .sum()
        .astype(int)
    )
    table.loc["total"] = table.sum()
    return table.reset_index().rename(columns={"index": "diagnosis"})


def qc_examples(qc: pd.DataFrame) -> tuple[Path | None, Path | None]:
    """One passed and one rejected map to show side by side (the rejected one with the
    largest non-zero fraction, the most visible failure)."""
    passed = qc[qc["qc_pass"]]
    rejected = qc[~qc["qc_pass"]]
    ok = Path(passed["gm_path"].iloc[0]) if len(passed) else None
    bad = (
        Path(rejected.sort_values("nonzero_fraction", ascending=False)["gm_path"].iloc[0])
        if len(rejected)
        else None
    )
    return ok, bad
