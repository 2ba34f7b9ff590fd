"""Intra-subject (longitudinal) against inter-subject (cross-sectional) similarity of
session masks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from neuromask.io.participants import session_order
from neuromask.metrics.similarity import cosine_matrix


def session_similarity(
    index: pd.DataFrame, vectors: np.ndarray, prob: np.ndarray | None = None
) -> pd.DataFrame:
    """Intra-subject (longitudinal) and inter-subject (cross-sectional) similarity.

    Intra: for each subject with two or more masked sessions, the mean over pairs of its
    sessions; then the mean over subjects. Inter: the mean over all pairs of different
    subjects' baseline (earliest) sessions. ``vectors``: ROI densities per row of
    ``index``; ``prob``: the symmetric prob_CNN matrix, same order.
    """

    metrics = {"roi_similarity": cosine_matrix(vectors)}
    if prob is not None:
        metrics["prob_cnn"] = prob
    subjects = index.groupby("participant_id").indices
    baseline = [
        min(rows, key=lambda i: session_order(index["session_id"].iloc[i]))
        for rows in subjects.values()
    ]
    out = []
    for name, matrix in metrics.items():
        per_subject = [
            np.mean([matrix[a, b] for a, b in itertools.combinations(rows, 2)])
            for rows in subjects.values()
            if len(rows) >= 2
        ]
        inter = [matrix[a, b] for a, b in itertools.combinations(baseline, 2)]
        out.append(
            {
                "metric": name,
                "intra_subject": float(np.mean(per_subject)) if per_subject else float("nan"),
                "inter_subject": float(np.mean(inter)) if inter else float("nan"),
                "subjects_intra": len(per_subject),
                "pairs_inter": len(inter),
            }
        )
    return pd.DataFrame(out)
