"""The paper's Figure 2 for a study: a map that passed, one that quality-check step 1
rejected and one that step 2 removed.

Step 1 is ``neuromask qc`` (the study's ``data/adni/qc/qc.tsv``). Step 2 is
``neuromask mask group-qc``, whose ``removed.tsv`` the report reads from
``STUDY_DIR/group-qc/`` when the user ran it there; without it the figure has the first
two panels and its caption says how to add the third. The report shows it in place of
the ADNI-like cohort's own QC figure, whose two examples are its first panels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neuromask.data.qc import qc_examples
from neuromask.figures.qc import plot_qc_panels
from neuromask.io.layout import StudyLayout

#: Where the report looks for a QC step 2 run of the study's ADNI-like cohort.
GROUP_QC = "group-qc"


def qc_steps_figure(study: Path, out: Path) -> tuple[Path, str] | None:
    """Draw the figure at ``out``; returns it with its caption, or None when the study has
    no quality-check table."""
    table_path = StudyLayout(study).qc("adni").table
    if not table_path.is_file():
        return None
    qc = pd.read_csv(table_path, sep="\t")
    ok, bad = qc_examples(qc.assign(qc_pass=qc["qc_pass"].astype(bool)))
    panels: list[tuple[Path, str]] = []
    if ok is not None:
        panels.append((ok, f"passed steps 1 and 2: {_name(qc, ok)}"))
    if bad is not None:
        reason = qc.loc[qc["gm_path"] == str(bad), "qc_reason"].iloc[0]
        panels.append((bad, f"step 1 failure: {_name(qc, bad)} ({reason})"))
    removed = study / GROUP_QC / "removed.tsv"
    third = f"run `neuromask mask group-qc ... {GROUP_QC}` in the study folder to add it"
    if removed.is_file():
        rows = pd.read_csv(removed, sep="\t")
        if len(rows):
            row = rows.iloc[0]
            match = qc[
                (qc["participant_id"] == row["participant_id"])
                & (qc["session_id"] == row["session_id"])
            ]
            if len(match):
                path = Path(match["gm_path"].iloc[0])
                panels.append(
                    (
                        path,
                        f"step 2 failure: {_name(qc, path)} (loss contribution "
                        f"{row['loss_contribution']:.3g}, above the far-out fence)",
                    )
                )
                third = f"{_name(qc, path)}, from {GROUP_QC}/removed.tsv"
        else:
            third = f"{GROUP_QC}/removed.tsv lists no session: step 2 removed none"
    if not panels:
        return None
    plot_qc_panels(panels, out)
    caption = (
        "The paper's Figure 2: a passed map, a step 1 failure (neuromask qc) and a step 2 "
        f"failure (neuromask mask group-qc; {third})"
    )
    return out, caption


def _name(qc: pd.DataFrame, path: Path) -> str:
    row = qc[qc["gm_path"] == str(path)].iloc[0]
    return f"{row['participant_id']} {row['session_id']}"
