"""The building blocks of the HTML report: sections, tables as HTML, figures embedded as
PNG and exported beside the page."""

from __future__ import annotations

import base64
import html
import platform
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuromask.io.atomic import atomic_path
from neuromask.io.layout import StudyLayout

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
        if value != 0 and (abs(float(value)) < 1e-3 or abs(float(value)) >= 1e5):
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


class ReportBuilder:
    def __init__(self, study: Path, out_dir: Path) -> None:
        self.study = study
        self.layout = StudyLayout(study)
        self.figures = out_dir / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.n_tables = 0
        self.n_figures = 0

    def table(self, section: Section, caption: str, table: pd.DataFrame, note: str = "") -> None:
        section.blocks.append(
            {"kind": "table", "caption": caption, "html": table_html(table), "note": note}
        )
        self.n_tables += 1

    def tsv(
        self, section: Section, caption: str, path: Path, note: str = ""
    ) -> pd.DataFrame | None:
        """The table at ``path`` (inside the study folder), shown when it exists."""
        if not path.is_file():
            return None
        rel = path.relative_to(self.study).as_posix()
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
        self, section: Section, path: Path, name: str, title: str, prob: bool = False
    ) -> None:
        """A square table of the study (``rel``) as a heatmap: ROI similarity on [0, 1],
        or prob_CNN (``prob``) on [0, its maximum] in scientific notation."""
        from neuromask.figures.studies import plot_similarity_heatmap

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
