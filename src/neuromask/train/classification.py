"""Classification metrics with AD (label 1) as the positive class."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def binary_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, p_ad: np.ndarray | None = None
) -> dict[str, float]:
    """Balanced accuracy, accuracy, sensitivity, specificity and (with ``p_ad``) ROC AUC.

    A class absent from ``y_true`` gives NaN for its rate, and a balanced accuracy over
    the rates that exist.

    >>> binary_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))["balanced_accuracy"]
    0.75
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    positives, negatives = y_true == 1, y_true == 0
    sensitivity = float((y_pred[positives] == 1).mean()) if positives.any() else float("nan")
    specificity = float((y_pred[negatives] == 0).mean()) if negatives.any() else float("nan")
    rates = [r for r in (sensitivity, specificity) if not np.isnan(r)]
    metrics = {
        "balanced_accuracy": float(np.mean(rates)) if rates else float("nan"),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "sensitivity": sensitivity,
        "specificity": specificity,
    }
    if p_ad is not None:
        both = positives.any() and negatives.any()
        metrics["roc_auc"] = float(roc_auc_score(y_true, p_ad)) if both else float("nan")
    return metrics
