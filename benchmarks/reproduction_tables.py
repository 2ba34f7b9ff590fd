"""The numbers of docs/reproduction.md, read from study folders.

Usage: python benchmarks/reproduction_tables.py NAME=STUDY_DIR [NAME=STUDY_DIR ...]

Each STUDY_DIR is what `neuromask study all --config PRESET --out STUDY_DIR` wrote (for
example `paper-small` and `small`, the demo's preset). For every claim of the paper that
the studies measure, the script prints one Markdown table with a column per study, so
that the guide's figures come from runs of the current code and can be checked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def tsv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def mean_sd(table: pd.DataFrame | None, column: str) -> str:
    if table is None or column not in table:
        return "–"
    rows = table[~table["split"].astype(str).isin(["mean", "sd"])]
    values = rows[column].astype(float)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def balanced_accuracy(study: Path) -> dict[str, str]:
    table = tsv(study / "cnn" / "balanced_accuracy.tsv")
    return {
        "validation BA (folds)": mean_sd(table, "validation"),
        "test BA (folds)": mean_sd(table, "test"),
        "independent cohort BA (folds)": mean_sd(table, "independent"),
    }


def cohorts(study: Path) -> dict[str, str]:
    table = tsv(study / "group" / "cohorts.tsv")
    if table is None:
        return {}
    mean = table[table["split"].astype(str) == "mean"].iloc[0]
    return {
        "ROI similarity, ADNI-like vs AIBL-like masks": f"{float(mean['roi_similarity']):.3f}",
        "prob_CNN, both directions": f"{float(mean['prob_cnn']):.3f}",
        "ADNI-like images, AIBL-like mask": f"{float(mean['adni_images_aibl_mask']):.3f}",
        "AIBL-like images, ADNI-like mask": f"{float(mean['aibl_images_adni_mask']):.3f}",
    }


def sessions(study: Path) -> dict[str, str]:
    table = tsv(study / "session" / "similarity.tsv")
    if table is None:
        return {}
    out = {}
    for row in table.itertuples():
        out[f"{row.metric}, intra-subject"] = f"{float(row.intra_subject):.3f}"
        out[f"{row.metric}, inter-subject"] = f"{float(row.inter_subject):.3f}"
    return out


def folds_runs(study: Path) -> dict[str, str]:
    table = tsv(study / "training" / "summary.tsv")
    if table is None:
        return {}
    out = {}
    for row in table.itertuples():
        out[f"ROI similarity between {row.between}"] = f"{float(row.mean_roi_similarity):.3f}"
        out[f"prob_CNN between {row.between}"] = f"{float(row.mean_prob_cnn):.3g}"
    return out


def truth_of(study: Path, cohort: str) -> set[str]:
    path = study / "data" / cohort / "synth" / "ground_truth" / "atrophy_rois.tsv"
    return set(pd.read_csv(path, sep="\t")["roi_name"]) if path.is_file() else set()


def regions(study: Path) -> dict[str, str]:
    table = tsv(study / "group" / "top_rois.tsv")
    if table is None:
        return {}
    out = {
        f"truly atrophied ROIs ({cohort}-like)": ", ".join(sorted(truth_of(study, cohort))) or "–"
        for cohort in ("adni", "aibl")
    }
    for row in table.itertuples():
        truth = truth_of(study, str(row.cohort))
        names = [part.split(" (")[0] for part in str(row.top).split(", ")]
        hits = sum(name in truth for name in names)
        out[f"split {row.split}, {row.cohort}: atrophied among the top 5"] = (
            f"{hits}/5 (P(AD) masked {float(row.p_ad_masked):.3g}, "
            f"deleted {float(row.deleted_fraction):.2%})"
        )
    return out


def neighbours(study: Path) -> dict[str, str]:
    out = {}
    for path in sorted((study / "mask-grid").glob("similarity_*.tsv")):
        table = pd.read_csv(path, sep="\t", index_col=0)
        values = table.to_numpy(dtype=float)
        pairs = [f"{values[i, i + 1]:.3f}" for i in range(len(values) - 1)]
        out[f"ROI similarity of neighbouring {path.stem.removeprefix('similarity_')}"] = ", ".join(
            pairs
        )
    return out


CLAIMS: dict[str, Callable[[Path], dict[str, str]]] = {
    "Balanced accuracy": balanced_accuracy,
    "ADNI vs AIBL masks": cohorts,
    "Intra- vs inter-subject session masks": sessions,
    "Folds vs re-runs": folds_runs,
    "Regions of the group masks": regions,
    "Masks of neighbouring hyperparameters": neighbours,
}


def main() -> None:
    studies = dict(arg.split("=", 1) for arg in sys.argv[1:])
    if not studies:
        sys.exit(__doc__)
    for claim, read in CLAIMS.items():
        columns = {name: read(Path(folder)) for name, folder in studies.items()}
        keys = list(dict.fromkeys(k for values in columns.values() for k in values))
        print(f"\n### {claim}\n")
        print("| quantity | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for key in keys:
            cells = [columns[name].get(key, "–") for name in columns]
            print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
