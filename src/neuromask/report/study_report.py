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

import base64
import datetime as _dt
import html
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import neuromask
from neuromask.errors import MissingFileError
from neuromask.io.atomic import atomic_path

VERSIONED = (
    "neuromask",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "nibabel",
    "nilearn",
    "scikit-learn",
    "optuna",
    "matplotlib",
    "captum",
    "jinja2",
)


@dataclass
class Section:
    key: str
    title: str
    text: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    missing: str = ""


def software_versions() -> pd.DataFrame:
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in VERSIONED:
        try:
            rows.append({"package": name, "version": metadata.version(name)})
        except metadata.PackageNotFoundError:
            rows.append({"package": name, "version": "not installed"})
    return pd.DataFrame(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return html.escape(str(value))


def table_html(table: pd.DataFrame) -> str:
    """A DataFrame as an HTML table (class ``data``), numbers rounded for reading."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Builder:
    def __init__(self, study: Path, out_dir: Path) -> None:
        self.study = study
        self.figures = out_dir / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.n_tables = 0
        self.n_figures = 0

    def table(self, section: Section, caption: str, table: pd.DataFrame, note: str = "") -> None:
        section.blocks.append(
            {"kind": "table", "caption": caption, "html": table_html(table), "note": note}
        )
        self.n_tables += 1

    def tsv(self, section: Section, caption: str, rel: str, note: str = "") -> pd.DataFrame | None:
        path = self.study / rel
        if not path.is_file():
            return None
        table = pd.read_csv(path, sep="\t")
        self.table(section, caption, table, note or f"From {rel}.")
        return table

    def figure(self, section: Section, caption: str, path: Path, name: str | None = None) -> None:
        """Embed a PNG and export it under report/figures/ (``name``, or its own name)."""
        if not path.is_file():
            return
        target = self.figures / (name or path.name)
        if path.resolve() != target.resolve():
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        data = base64.b64encode(target.read_bytes()).decode("ascii")
        rel = target.relative_to(self.study) if target.is_relative_to(self.study) else target
        section.blocks.append(
            {"kind": "figure", "caption": caption, "data": data, "file": str(rel)}
        )
        self.n_figures += 1

    def heatmap(
        self, section: Section, rel: str, name: str, title: str, prob: bool = False
    ) -> None:
        """A square table of the study (``rel``) as a heatmap: ROI similarity on [0, 1],
        or prob_CNN (``prob``) on [0, its maximum] in scientific notation."""
        from neuromask.report.study_figures import plot_similarity_heatmap

        path = self.study / rel
        if not path.is_file():
            return
        table = pd.read_csv(path, sep="\t")
        vmax = max(1e-6, float(table.iloc[:, 1:].to_numpy().max())) if prob else 1.0
        fmt = "{:.1e}" if prob else "{:.2f}"
        self.new_figure(
            section,
            title,
            name,
            lambda p: plot_similarity_heatmap(table, p, title=title, vmax=vmax, fmt=fmt),
        )

    def new_figure(self, section: Section, caption: str, name: str, plot) -> None:
        path = self.figures / name
        plot(path)
        self.figure(section, caption, path)


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
        if not (path / "atrophy_rois.tsv").is_file():
            raise MissingFileError(f"{path} is not a ground_truth folder (no atrophy_rois.tsv)")
        return path
    default = study / "data" / "adni" / "synth" / "ground_truth"
    return default if (default / "atrophy_rois.tsv").is_file() else None


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
    if not (study / "study.toml").is_file():
        raise MissingFileError(
            f"{study} is not a study folder (no study.toml); run `neuromask study` first"
        )
    out = Path(out) if out is not None else study / "report" / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    b = _Builder(study, out.parent)
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
def _settings_section(b: _Builder, study: Path) -> Section:
    s = Section("settings", "Settings, seeds and software")
    s.text.append(
        "Every setting of the study, as `neuromask study` recorded it in study.toml (seeds "
        "included: data.seed draws the cohorts and the split; each training run's seed is "
        "derived from train.seed and the run number; mask seeds shuffle the images)."
    )
    s.blocks.append(
        {"kind": "pre", "caption": "study.toml", "text": (study / "study.toml").read_text()}
    )
    b.table(s, "Software versions", software_versions())
    return s


def _data_section(b: _Builder, study: Path) -> Section:
    s = Section("data", "Data: quality check and split")
    data = study / "data"
    if not data.is_dir():
        s.missing = "No data folder: the study reads a CAPS folder given in study.toml."
        return s
    done = data / "done.json"
    if done.is_file():
        rois = json.loads(done.read_text()).get("atrophy_rois", [])
        s.text.append(
            "Synthetic cohorts written by neuromask; the regions given atrophy (ground "
            f"truth): {', '.join(rois)}."
        )
    rows = []
    for cohort in ("adni", "aibl"):
        qc = data / cohort / "qc" / "qc.tsv"
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
            b.figure(
                s,
                f"{cohort}: quality check, examples of passed and rejected sessions",
                data / cohort / "qc" / "qc.png",
                f"qc_{cohort}.png",
            )
    if rows:
        b.table(s, "Cohorts and quality check", pd.DataFrame(rows))
    b.tsv(
        s,
        "Split: age- and sex-matched test set and cross-validation folds",
        "data/adni/split/summary.tsv",
    )
    return s


def _cnn_section(b: _Builder, study: Path) -> Section:
    s = Section("cnn", "CNN: balanced accuracy")
    table = b.tsv(
        s,
        "Balanced accuracy per fold (mean over runs), with the mean and SD over folds",
        "cnn/balanced_accuracy.tsv",
    )
    if table is None:
        s.missing = "The cnn study was not run (neuromask study cnn)."
    b.tsv(s, "Balanced accuracy of every run", "cnn/balanced_accuracy_runs.tsv")
    histories = {}
    for path in sorted((study / "models").glob("split-*/run-*/training.tsv")):
        histories[f"{path.parent.parent.name}/{path.parent.name}"] = pd.read_csv(path, sep="\t")
    if histories:
        from neuromask.report.study_figures import plot_training_curves

        b.new_figure(
            s,
            "Training curves of every run",
            "training_curves.png",
            lambda p: plot_training_curves(histories, p),
        )
    return s


def _group_section(b: _Builder, study: Path, truth_dir: Path | None, k: int) -> Section:
    from neuromask.io.atlas import load_aal2
    from neuromask.io.nifti import load_volume
    from neuromask.metrics.localization import localization_scores, read_truth_rois
    from neuromask.metrics.roi import roi_densities
    from neuromask.report.study_figures import (
        plot_mask_history,
        plot_roi_bars,
    )

    s = Section("group", "Group masks: folds and cohorts")
    tops = b.tsv(
        s,
        "Top ROIs of each group mask (AAL2 density: mean of 1 − m)",
        "group/top_rois.tsv",
    )
    if tops is None:
        s.missing = "The group study was not run (neuromask study group)."
        return s
    b.figure(
        s,
        "Group masks, folds × cohorts (1 − m over the GM template)",
        study / "group" / "masks_folds_cohorts.png",
    )
    b.tsv(
        s,
        "Similarity between the cohorts' masks, per fold",
        "group/cohorts.tsv",
        "ROI cosine similarity and prob_CNN (mean P(AD) of a model's images masked with the "
        "other cohort's mask; near 0: the masks are alike).",
    )
    for name, title in (
        ("adni_folds_roi_similarity", "ROI similarity between folds"),
        ("adni_folds_prob_cnn", "prob_CNN between folds"),
    ):
        b.heatmap(s, f"group/{name}.tsv", f"{name}.png", title, prob="prob" in name)
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
    atlas = load_aal2(grid)
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
        rows = []
        for row in tops.itertuples(index=False):
            m, _ = load_volume(row.mask_file, grid)
            sc = localization_scores(m, atlas, truth_rois, k=k)
            rows.append(
                {
                    "split": row.split,
                    "cohort": row.cohort,
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
    return s


def _grid_section(b: _Builder, study: Path) -> Section:
    s = Section("grid", "Mask hyperparameters")
    if b.tsv(s, "Group masks across hyperparameter values", "mask-grid/masks.tsv") is None:
        s.missing = "The mask-grid study was not run (neuromask study mask-grid)."
        return s
    for param in ("beta1", "beta2", "lambda1", "lambda2"):
        b.tsv(
            s,
            f"ROI similarity between masks of different {param}",
            f"mask-grid/similarity_{param}.tsv",
        )
        b.figure(
            s,
            f"Masks across {param}",
            study / "mask-grid" / f"masks_{param}.png",
            f"grid_masks_{param}.png",
        )
    return s


def _session_section(b: _Builder, study: Path) -> Section:
    s = Section("session", "Session masks: intra- vs inter-subject")
    if (
        b.tsv(
            s, "Similarity of session masks within and between subjects", "session/similarity.tsv"
        )
        is None
    ):
        s.missing = "The session study was not run (neuromask study session)."
        return s
    b.tsv(s, "Session masks", "session/masks.tsv")
    return s


def _training_section(b: _Builder, study: Path) -> Section:
    s = Section("training", "Robustness of training: folds vs runs")
    if (
        b.tsv(s, "Similarity of group masks between folds and between runs", "training/summary.tsv")
        is None
    ):
        s.missing = "The training study was not run (neuromask study training)."
        return s
    for key in ("folds", "runs"):
        b.figure(
            s,
            f"Group masks of different {key}",
            study / "training" / f"masks_{key}.png",
            f"training_masks_{key}.png",
        )
        b.heatmap(
            s,
            f"training/{key}_roi_similarity.tsv",
            f"training_{key}_similarity.png",
            f"ROI similarity between {key}",
        )
    return s


def _sanity_section(b: _Builder, study: Path) -> Section:
    s = Section("sanity", "Explanation methods and sanity checks")
    table = b.tsv(
        s,
        "neuromask's group mask against the usual attribution methods, same CNN and images",
        "sanity/explainers.tsv",
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
        study / "sanity" / "sanity.png",
        "sanity_cascade.png",
    )
    b.figure(
        s,
        "Maps of each method from the trained and randomised CNNs",
        study / "sanity" / "maps.png",
        "sanity_maps.png",
    )
    return s
