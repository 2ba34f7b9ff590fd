"""The tables of ``neuromask sanity``: each method's maps on the randomised CNNs against
its map on the trained CNN (``cascade.tsv``), and one row per method (``explainers.tsv``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from neuromask.io.atlas import Atlas
from neuromask.jobs.sanity_maps import Explanation, SanityConfig
from neuromask.metrics.coherence import coherence
from neuromask.metrics.localization import GroundTruth
from neuromask.metrics.similarity import cosine, inter_subject_similarity, roi_vector, spearman

#: The CNNs whose explanations are compared: (label, last layer randomised, layers
#: randomised; -1 for the shuffled-label CNN).
ModelSpec = tuple[str, str, int]


def cascade_table(
    models: list[ModelSpec],
    methods: tuple[str, ...],
    explained: dict[tuple[str, str], Explanation],
    atlas: Atlas,
) -> pd.DataFrame:
    """Each method's map on each CNN against its map on the trained CNN."""
    vectors = {key: roi_vector(e.group, atlas) for key, e in explained.items()}
    rows = []
    for label, layer, n_layers in models:
        for method in methods:
            a, b = vectors["trained", method], vectors[label, method]
            rows.append(
                {
                    "method": method,
                    "model": label,
                    "layers_randomised": n_layers,
                    "last_layer_randomised": layer,
                    "roi_similarity": cosine(a, b),
                    "spearman": spearman(a, b),
                    "empty_map": not bool(np.any(explained[label, method].group > 0)),
                }
            )
    return pd.DataFrame(rows)


def _method_row(
    method: str,
    trained: Explanation,
    per: pd.DataFrame,
    full: str,
    config: SanityConfig,
    atlas: Atlas,
    truth: GroundTruth | None,
    faithfulness: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One row of ``explainers.tsv``: localisation, faithfulness (deletion, insertion
    and ROAD areas), randomisation checks and cost."""
    row: dict[str, Any] = {"method": method}
    if truth is not None:
        s = truth.scores(trained.group, atlas, k=config.k, kind="attribution")
        row.update(
            roi_precision_at_k=s.roi_precision_at_k,
            roi_recall_at_k=s.roi_recall_at_k,
            voxel_auc=s.voxel_auc,
            mass_accuracy=s.mass_accuracy,
            top_rois=", ".join(s.top_rois),
        )
    row["coherence"] = coherence(np.abs(trained.group), atlas.labels > 0).coherence
    row.update(faithfulness or {})
    assert trained.per_image is not None
    inter = inter_subject_similarity(trained.per_image)
    checks = [per.loc[full, "roi_similarity"]]
    row.update(
        inter_subject_similarity=inter,
        inter_subject_spearman=inter_subject_similarity(trained.per_image, spearman),
        similarity_randomised=per.loc[full, "roi_similarity"],
        spearman_randomised=per.loc[full, "spearman"],
        randomised_map_empty=bool(per.loc[full, "empty_map"]),
    )
    if config.shuffled:
        checks.append(per.loc["shuffled", "roi_similarity"])
        row.update(
            similarity_shuffled=per.loc["shuffled", "roi_similarity"],
            spearman_shuffled=per.loc["shuffled", "spearman"],
            shuffled_map_empty=bool(per.loc["shuffled", "empty_map"]),
        )
    row.update(
        passes_randomisation=bool(max(checks) < inter),
        seconds=trained.cost.seconds,
        peak_memory_mb=trained.cost.peak_memory_mb,
    )
    return row


def explainer_table(
    cascade: pd.DataFrame,
    explained: dict[tuple[str, str], Explanation],
    full: str,
    config: SanityConfig,
    atlas: Atlas,
    truth: GroundTruth | None,
    faithfulness: dict[str, dict[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per method (``explainers.tsv``)."""
    rows = [
        _method_row(
            method,
            explained["trained", method],
            cascade[cascade["method"] == method].set_index("model"),
            full,
            config,
            atlas,
            truth,
            (faithfulness or {}).get(method),
        )
        for method in config.methods
    ]
    return pd.DataFrame(rows)
