"""The quality-check job, folder in, folder out: ``neuromask qc`` (and the studies' data
stage) runs the checks of :mod:`neuromask.data.qc` on a cohort and writes their tables and
figure."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import neuromask
from neuromask.data.qc import QCThresholds, qc_examples, run_qc
from neuromask.errors import NeuromaskWarning
from neuromask.figures.qc import plot_qc_examples
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.layout import QC_RECORD, QCLayout, record_path
from neuromask.io.participants import DEMOGRAPHIC_COLUMNS, read_participants, write_tsv


@dataclass
class QCOutputs:
    table: pd.DataFrame
    qc_tsv: Path
    pass_tsv: Path
    figure: Path


def quality_check_folder(
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    thresholds: QCThresholds | None = None,
    *,
    dartel_group: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> QCOutputs:
    """Run the quality check and write ``qc.tsv``, ``pass.tsv``, ``qc.png`` and ``qc.json``.

    ``pass.tsv`` keeps the input's columns, so it can be given to ``split`` as it is.
    """
    thresholds = thresholds or QCThresholds()
    sessions = read_participants(tsv, required=())
    lacking = [c for c in DEMOGRAPHIC_COLUMNS if c not in sessions.columns]
    if lacking:
        warnings.warn(
            f"TSV file {tsv} lacks the column(s) {', '.join(lacking)}, which `neuromask "
            "split` and training need; pass.tsv will lack them too.",
            NeuromaskWarning,
            stacklevel=2,
        )
    out = Path(out)
    with staged_output_dir(out, overwrite, marker=QC_RECORD, inputs=[caps, tsv]) as stage:
        staged = QCLayout(stage)
        table = run_qc(caps, sessions, thresholds, dartel_group=dartel_group, progress=progress)
        write_tsv(table, staged.table)
        write_tsv(table.loc[table["qc_pass"], sessions.columns], staged.passed)
        ok, bad = qc_examples(table)
        reason = table.loc[table["gm_path"] == str(bad), "qc_reason"].iloc[0] if bad else ""
        plot_qc_examples(ok, bad, staged.figure, rejected_reason=reason)
        record = {
            "neuromask_version": neuromask.__version__,
            "caps": record_path(caps, out),
            "tsv": record_path(tsv, out),
            "dartel_group": dartel_group,
            "thresholds": asdict(thresholds),
        }
        with atomic_path(staged.record) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
    final = QCLayout(out)
    return QCOutputs(table, final.table, final.passed, final.figure)
