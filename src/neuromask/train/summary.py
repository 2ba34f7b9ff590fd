"""Results across splits and runs, shaped like the paper's table: per fold, the
validation, test and independent-cohort balanced accuracies, and their means."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from neuromask.errors import MissingFileError
from neuromask.io.layout import EVALUATION_RECORD, RUN_GLOB, run_of
from neuromask.train.trainer import DONE


def collect_results(
    train_out: str | os.PathLike[str], names: list[str] | tuple[str, ...] = ()
) -> pd.DataFrame:
    """One row per finished run (split, run) with ``validation`` and each evaluation
    ``name`` (``MODEL_DIR/NAME/metrics.json``) as balanced-accuracy columns, then a row
    ``mean`` and a row ``std``."""
    train_out = Path(train_out)
    rows = []
    for done in sorted(train_out.glob(f"{RUN_GLOB}/{DONE}")):
        run_folder = done.parent
        split, run = run_of(run_folder)
        record = json.loads(done.read_text())
        row = {
            "split": split,
            "run": run,
            "validation": record["metrics"]["balanced_accuracy"],
            "best_epoch": record["best_epoch"],
        }
        for name in names:
            metrics = run_folder / name / EVALUATION_RECORD
            row[name] = (
                json.loads(metrics.read_text())["balanced_accuracy"]
                if metrics.is_file()
                else np.nan
            )
        rows.append(row)
    if not rows:
        raise MissingFileError(f"{train_out} holds no finished run (split-<k>/run-<r>/{DONE}).")
    table = pd.DataFrame(rows).sort_values(["split", "run"]).reset_index(drop=True)
    columns = ["validation", *names]
    mean = {"split": "mean", "run": "", **table[columns].mean().to_dict(), "best_epoch": np.nan}
    std = {"split": "std", "run": "", **table[columns].std(ddof=1).to_dict(), "best_epoch": np.nan}
    table = table.astype({"split": object, "run": object})
    return pd.concat([table, pd.DataFrame([mean, std])], ignore_index=True)
