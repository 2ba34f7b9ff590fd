"""``neuromask report STUDY_DIR``: one self-contained HTML page of a study's results.

The page is rendered from a Jinja template shipped with the package
(``report/templates/report.html.j2``). Every figure is embedded in it as PNG (base64) and
also written to ``STUDY_DIR/report/figures/``. Tables come from the TSV files that
``neuromask study`` wrote; a study that was not run gets a line saying so. The ground
truth of a synthetic study (``data/adni/synth/ground_truth``, or ``truth=``) adds the
comparison of the group masks with the truly atrophied regions. A ``sanity`` folder
(``neuromask sanity MODEL STUDY_DIR/sanity``) adds the table of explanation methods.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import neuromask
from neuromask.errors import MissingFileError, OutputExistsError
from neuromask.io.atomic import atomic_path
from neuromask.io.layout import RUN_GLOB, StudyLayout, TruthLayout
from neuromask.report.builder import ReportBuilder, Section, software_versions, table_html  # noqa: F401

#: Marks a page as neuromask's report: only such a page is ever replaced.
GENERATOR = '<meta name="generator" content="neuromask report">'


def _refuse_foreign_file(out: Path) -> None:
    """The report replaces only an earlier report, never another file."""
    if out.is_dir() or (out.exists() and GENERATOR not in out.read_text(errors="replace")[:2000]):
        raise OutputExistsError(
            f"{out} exists and is not a neuromask report; neuromask only replaces its own "
            "report. Choose another --out."
        )


@dataclass
class ReportResult:
    path: Path
    figures_dir: Path
    n_tables: int
    n_figures: int
    sections: list[str]


def _read_truth(study: Path, truth: str | os.PathLike[str] | None) -> Path | None:
    if truth is not None:
        path = Path(truth)
        if not TruthLayout(path).exists():
            raise MissingFileError(f"{path} is not a ground_truth folder (no atrophy_rois.tsv)")
        return path
    default = StudyLayout(study).truth
    return default.root if default.exists() else None


def build_report(
    study_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    truth: str | os.PathLike[str] | None = None,
    k: int = 5,
) -> ReportResult:
    """Write the HTML report of ``study_dir`` (default ``STUDY_DIR/report/report.html``)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    study = Path(study_dir)
    if not StudyLayout(study).settings.is_file():
        raise MissingFileError(
            f"{study} is not a study folder (no study.toml); run `neuromask study` first"
        )
    out = Path(out) if out is not None else StudyLayout(study).report / "report.html"
    _refuse_foreign_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    b = ReportBuilder(study, out.parent)
    truth_dir = _read_truth(study, truth)
    sections = [
        _data_section(b, study),
        _cnn_section(b, study),
        _group_section(b, study, truth_dir, k),
        _grid_section(b, study),
        _session_section(b, study),
        _training_section(b, study),
        _sanity_section(b, study),
        _settings_section(b, study),
    ]
    env = Environment(
        loader=PackageLoader("neuromask", "report/templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    page = env.get_template("report.html.j2").render(
        title=f"neuromask report: {study.resolve().name}",
        subtitle=(
            f"Study folder {study.resolve()}; written {_dt.datetime.now():%Y-%m-%d %H:%M} by "
            f"neuromask {neuromask.__version__}"
        ),
        sections=sections,
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return ReportResult(out, b.figures, b.n_tables, b.n_figures, [s.key for s in sections])


# ---------------------------------------------------------------------- sections
def _settings_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("settings", "Settings, seeds and software")
    s.text.append(
        "Every setting of the study, as `neuromask study` recorded it in study.toml (seeds "
        "included: data.seed draws the cohorts and the split; each training run's seed is "
        "derived from train.seed and the run number; mask seeds shuffle the images)."
    )
    s.blocks.append({"kind": "pre", "caption": "study.toml", "text": b.layout.settings.read_text()})
    b.table(s, "Software versions", software_versions())
    return s


def _data_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("data", "Data: quality check and split")
    if not b.layout.data.is_dir():
        s.missing = "No data folder: the study reads a CAPS folder given in study.toml."
        return s
    done = b.layout.data_done
    if done.is_file():
        rois = json.loads(done.read_text()).get("atrophy_rois", [])
        s.text.append(
            "Synthetic cohorts written by neuromask; the regions given atrophy (ground "
            f"truth): {', '.join(rois)}."
        )
    from neuromask.report.qc_steps import qc_steps_figure

    steps = qc_steps_figure(study, b.figures / "qc_steps.png")
    rows = []
    for cohort in ("adni", "aibl"):
        qc = b.layout.qc(cohort).table
        if qc.is_file():
            table = pd.read_csv(qc, sep="\t")
            passed = table["qc_pass"].astype(bool) if "qc_pass" in table else None
            rows.append(
                {
                    "cohort": cohort,
                    "sessions": len(table),
                    "subjects": table["participant_id"].nunique(),
                    "rejected by QC": int((~passed).sum()) if passed is not None else np.nan,
                }
            )
            if cohort == "adni" and steps is not None:
                b.figure(s, steps[1], steps[0])
            else:
                b.figure(
                    s,
                    f"{cohort}: quality check, examples of passed and rejected sessions",
                    b.layout.qc(cohort).figure,
                    f"qc_{cohort}.png",
                )
    if rows:
        b.table(s, "Cohorts and quality check", pd.DataFrame(rows))
    b.tsv(
        s,
        "Split: age- and sex-matched test set and cross-validation folds",
        b.layout.split.summary_tsv,
    )
    return s


def _cnn_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("cnn", "CNN: balanced accuracy")
    table = b.tsv(
        s,
        "Balanced accuracy per fold (mean over runs), with the mean and SD over folds",
        b.layout.tables("cnn") / "balanced_accuracy.tsv",
    )
    if table is None:
        s.missing = "The cnn study was not run (neuromask study cnn)."
    b.tsv(
        s, "Balanced accuracy of every run", b.layout.tables("cnn") / "balanced_accuracy_runs.tsv"
    )
    _architecture_figure(b, s)
    histories = {}
    for path in sorted(b.layout.models.glob(f"{RUN_GLOB}/training.tsv")):
        histories[f"{path.parent.parent.name}/{path.parent.name}"] = pd.read_csv(path, sep="\t")
    if histories:
        from neuromask.figures.studies import plot_training_curves

        b.new_figure(
            s,
            "Training curves of every run",
            "training_curves.png",
            lambda p: plot_training_curves(histories, p),
        )
    return s


def _architecture_figure(b: ReportBuilder, s: Section) -> None:
    """The paper's Figure 1: the first run's CNN, drawn from its recorded settings."""
    from neuromask.figures.architecture import plot_run_architecture

    runs = sorted(p.parent for p in b.layout.models.glob(f"{RUN_GLOB}/config.json"))
    if runs:
        caption = plot_run_architecture(runs[0], b.figures / "architecture.png")
        b.figure(s, caption, b.figures / "architecture.png")


def _group_section(b: ReportBuilder, study: Path, truth_dir: Path | None, k: int) -> Section:
    from neuromask.figures.studies import (
        plot_mask_history,
        plot_roi_bars,
    )
    from neuromask.io.atlas import default_atlas
    from neuromask.io.nifti import load_volume
    from neuromask.metrics.localization import read_truth_rois
    from neuromask.metrics.roi import roi_densities

    s = Section("group", "Group masks: folds and cohorts")
    tops = b.tsv(
        s,
        "Top ROIs of each group mask (AAL2 density: mean of 1 − m)",
        b.layout.tables("group") / "top_rois.tsv",
    )
    if tops is None:
        s.missing = "The group study was not run (neuromask study group)."
        return s
    b.figure(
        s,
        "Group masks, folds × cohorts (1 − m over the GM template)",
        b.layout.tables("group") / "masks_folds_cohorts.png",
    )
    b.tsv(
        s,
        "Similarity between the cohorts' masks, per fold",
        b.layout.tables("group") / "cohorts.tsv",
        "ROI cosine similarity and prob_CNN: the mean P(AD) of each cohort's baseline AD "
        "images masked with the other cohort's mask, both directions averaged (near 0: "
        "each mask removes the other cohort's evidence too).",
    )
    for name, title in (
        ("adni_folds_roi_similarity", "ROI similarity between folds"),
        ("adni_folds_prob_cnn", "prob_CNN between folds"),
    ):
        b.heatmap(
            s, b.layout.tables("group") / f"{name}.tsv", f"{name}.png", title, prob="prob" in name
        )
    if "mask_file" not in tops:
        return s
    first = Path(tops["mask_file"].iloc[0])
    if not first.is_file():
        return s
    b.figure(
        s,
        f"Group mask of split {tops['split'].iloc[0]}, {tops['cohort'].iloc[0]}: "
        "coronal slices, then sagittal, coronal and axial views through its peak",
        first.parent / "mask.png",
        "group_mask.png",
    )
    mask, grid = load_volume(first)
    atlas = default_atlas(grid)
    truth_rois = read_truth_rois(truth_dir) if truth_dir else []
    b.new_figure(
        s,
        f"ROI densities of split {tops['split'].iloc[0]}, {tops['cohort'].iloc[0]}",
        "group_roi_densities.png",
        lambda p: plot_roi_bars(
            roi_densities(mask, atlas),
            p,
            truth=truth_rois,
            title="densest AAL2 ROIs of the group mask",
        ),
    )
    history = first.parent / "history.tsv"
    if history.is_file():
        b.new_figure(
            s,
            "Mask optimisation of that mask: each term of the loss per epoch",
            "group_mask_history.png",
            lambda p: plot_mask_history(pd.read_csv(history, sep="\t"), p),
        )
    if truth_rois:
        _truth_table(b, s, tops, truth_rois, k)
    return s


def _truth_table(
    b: ReportBuilder, s: Section, tops: pd.DataFrame, truth_rois: list[str], k: int
) -> None:
    """Localisation scores of every group mask against the ground truth."""
    from neuromask.studies.tables import localise_group_masks

    rows = []
    for found in localise_group_masks(tops, truth_rois, k=k):
        sc = found["scores"]
        rows.append(
            {
                "split": found["split"],
                "cohort": found["cohort"],
                f"precision@{k}": sc.roi_precision_at_k,
                f"recall@{k}": sc.roi_recall_at_k,
                "voxel AUC": sc.voxel_auc,
                "mass accuracy": sc.mass_accuracy,
                "found (top ROIs that are truly atrophied)": ", ".join(
                    r for r in sc.top_rois if r in truth_rois
                )
                or "none",
            }
        )
    b.table(
        s,
        "Ground truth: do the group masks find the atrophied regions?",
        pd.DataFrame(rows),
        f"Atrophied ROIs (ground truth): {', '.join(truth_rois)}. Scores of "
        "`neuromask localize`: precision and recall of the top ROIs, voxel ROC AUC "
        "of 1 − m against the atrophy map, share of 1 − m inside it.",
    )


def _grid_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("grid", "Mask hyperparameters")
    tables = b.layout.tables("mask-grid")
    if b.tsv(s, "Group masks across hyperparameter values", tables / "masks.tsv") is None:
        s.missing = "The mask-grid study was not run (neuromask study mask-grid)."
        return s
    for param in ("beta1", "beta2", "lambda1", "lambda2"):
        b.tsv(
            s,
            f"ROI similarity between masks of different {param}",
            tables / f"similarity_{param}.tsv",
        )
        b.figure(
            s,
            f"Masks across {param}",
            tables / f"masks_{param}.png",
            f"grid_masks_{param}.png",
        )
    return s


def _session_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("session", "Session masks: intra- vs inter-subject")
    tables = b.layout.tables("session")
    caption = "Similarity of session masks within and between subjects"
    if b.tsv(s, caption, tables / "similarity.tsv") is None:
        s.missing = "The session study was not run (neuromask study session)."
        return s
    b.tsv(s, "Session masks", tables / "masks.tsv")
    return s


def _training_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("training", "Robustness of training: folds vs runs")
    caption = "Similarity of group masks between folds and between runs"
    if b.tsv(s, caption, b.layout.tables("training") / "summary.tsv") is None:
        s.missing = "The training study was not run (neuromask study training)."
        return s
    for key in ("folds", "runs"):
        b.figure(
            s,
            f"Group masks of different {key}",
            b.layout.tables("training") / f"masks_{key}.png",
            f"training_masks_{key}.png",
        )
        b.heatmap(
            s,
            b.layout.tables("training") / f"{key}_roi_similarity.tsv",
            f"training_{key}_similarity.png",
            f"ROI similarity between {key}",
        )
    return s


def _sanity_section(b: ReportBuilder, study: Path) -> Section:
    s = Section("sanity", "Explanation methods and sanity checks")
    table = b.tsv(
        s,
        "neuromask's group mask against the usual attribution methods, same CNN and images",
        b.layout.sanity / "explainers.tsv",
        "Localisation against the ground truth; ROI similarity of each method's map from the "
        "fully re-initialised and the shuffled-label CNN to the trained CNN's map (a method "
        "passes below its inter-subject similarity); time and peak memory on the trained CNN.",
    )
    if table is None:
        s.missing = (
            "Not run. `neuromask sanity STUDY_DIR/models/split-0/run-0 STUDY_DIR/sanity "
            "--truth STUDY_DIR/data/adni/synth/ground_truth` adds it."
        )
        return s
    b.figure(
        s,
        "Similarity to the trained CNN's map as layers are re-initialised",
        b.layout.sanity / "sanity.png",
        "sanity_cascade.png",
    )
    b.figure(
        s,
        "Maps of each method from the trained and randomised CNNs",
        b.layout.sanity / "maps.png",
        "sanity_maps.png",
    )
    return s
