"""The participants TSV: one row per session, validated row by row.

Columns ``participant_id`` and ``session_id`` are always required; ``diagnosis`` (AD or
CN), ``age`` and ``sex`` (M or F) are required by the commands that use them and checked
whenever present. Further columns are kept as they are.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from neuromask.errors import NeuromaskWarning, TableError, missing_file, shown
from neuromask.io.atomic import atomic_path

ID_COLUMNS = ("participant_id", "session_id")
DEMOGRAPHIC_COLUMNS = ("diagnosis", "age", "sex")
ALL_COLUMNS = ID_COLUMNS + DEMOGRAPHIC_COLUMNS
DIAGNOSES = ("AD", "CN")
SEXES = ("M", "F")

_PARTICIPANT_RE = re.compile(r"^sub-[A-Za-z0-9]+$")
_SESSION_RE = re.compile(r"^ses-[A-Za-z0-9]+$")


def read_participants(
    path: str | os.PathLike[str], required: Iterable[str] = ALL_COLUMNS
) -> pd.DataFrame:
    """Read and validate a participants TSV.

    Errors name the file and the line (as counted by a text editor, header = line 1).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "TSV file")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"TSV file {path} cannot be parsed: {exc}") from None
    return validate_participants(df, source=str(path), required=required)


def validate_participants(
    df: pd.DataFrame, source: str = "participants table", required: Iterable[str] = ALL_COLUMNS
) -> pd.DataFrame:
    """Check a participants table and return a clean copy (``age`` as float)."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    required = list(dict.fromkeys([*ID_COLUMNS, *required]))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TableError(
            f"TSV file {source} lacks the column(s) {', '.join(missing)}; "
            f"found: {', '.join(df.columns) or 'none'}."
        )
    if df.empty:
        raise TableError(f"TSV file {source} has no rows.")
    for column in [c for c in ALL_COLUMNS if c in df.columns and c != "age"]:
        df[column] = df[column].astype(str).str.strip()

    def line(i: int) -> int:
        return int(i) + 2  # header is line 1

    for i, value in df["participant_id"].items():
        if not _PARTICIPANT_RE.match(value):
            raise TableError(
                f"TSV file {source}, line {line(i)}: participant_id {shown(value)} is not a BIDS "
                "label (expected 'sub-' followed by letters and digits only)."
            )
    for i, value in df["session_id"].items():
        if not _SESSION_RE.match(value):
            raise TableError(
                f"TSV file {source}, line {line(i)}: session_id {shown(value)} is not a BIDS "
                "label (expected 'ses-' followed by letters and digits only)."
            )
    duplicated = df.duplicated(subset=list(ID_COLUMNS), keep="first")
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        first = int(
            np.flatnonzero(
                (df["participant_id"] == df["participant_id"].iloc[i])
                & (df["session_id"] == df["session_id"].iloc[i])
            )[0]
        )
        raise TableError(
            f"TSV file {source}, line {line(i)}: duplicate row for "
            f"{df['participant_id'].iloc[i]} {df['session_id'].iloc[i]} "
            f"(first seen on line {line(first)})."
        )
    if "diagnosis" in df.columns:
        for i, value in df["diagnosis"].items():
            if value not in DIAGNOSES:
                raise TableError(
                    f"TSV file {source}, line {line(i)}: unknown diagnosis {shown(value)} "
                    f"(expected one of {', '.join(DIAGNOSES)})."
                )
    if "sex" in df.columns:
        for i, value in df["sex"].items():
            if value not in SEXES:
                raise TableError(
                    f"TSV file {source}, line {line(i)}: unknown sex {shown(value)} "
                    f"(expected one of {', '.join(SEXES)})."
                )
    if "age" in df.columns:
        ages = pd.to_numeric(df["age"], errors="coerce")
        bad = ~np.isfinite(ages.to_numpy(dtype=float)) | (ages.to_numpy(dtype=float) < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TableError(
                f"TSV file {source}, line {line(i)}: age {shown(df['age'].iloc[i])} is not a "
                "non-negative number."
            )
        df["age"] = ages.astype(float)
    _warn_inconsistent(df, source)
    return df.reset_index(drop=True)


def inconsistent_subjects(df: pd.DataFrame, column: str) -> list[str]:
    """Participants whose sessions disagree on ``column`` (sex, diagnosis), in order."""
    if column not in df.columns:
        return []
    counts = df.groupby("participant_id", sort=False)[column].nunique()
    return [str(p) for p in counts[counts > 1].index]


def _history(df: pd.DataFrame, participant: str, column: str) -> str:
    rows = df[df["participant_id"] == participant]
    ordered = rows.assign(_o=rows["session_id"].map(session_order)).sort_values("_o")
    return " -> ".join(ordered[column].astype(str))


def _warn_inconsistent(df: pd.DataFrame, source: str) -> None:
    """Warn about subjects whose sessions contradict each other."""
    for column, what in (("sex", "sex"), ("diagnosis", "diagnosis")):
        subjects = inconsistent_subjects(df, column)
        if not subjects:
            continue
        shown = "; ".join(f"{p} ({_history(df, p, column)})" for p in subjects[:3])
        more = f" and {len(subjects) - 3} more" if len(subjects) > 3 else ""
        consequence = (
            "its sessions contradict each other"
            if column == "sex"
            else "not a stable CN or stable AD subject, which `neuromask split` leaves out"
        )
        warnings.warn(
            f"TSV file {source}: the {what} changes across sessions for {shown}{more}: "
            f"{consequence}.",
            NeuromaskWarning,
            stacklevel=4,
        )


def write_tsv(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table as TSV, atomically, without the index."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return path


def session_order(session_id: str) -> tuple[int, str]:
    """Sort key that puts ``ses-M000`` < ``ses-M006`` < ``ses-M012`` and the rest after.

    >>> sorted(["ses-M012", "ses-M006", "ses-M000"], key=session_order)
    ['ses-M000', 'ses-M006', 'ses-M012']
    """
    match = re.match(r"^ses-M(\d+)$", session_id)
    return (int(match.group(1)), "") if match else (10**9, session_id)


def baseline_sessions(df: pd.DataFrame) -> pd.DataFrame:
    """One row per participant: its earliest session (``ses-M000`` when present)."""
    order = df["session_id"].map(session_order)
    ranked = df.assign(_order=order).sort_values(["participant_id", "_order"], kind="stable")
    first = ranked.drop_duplicates("participant_id", keep="first").drop(columns="_order")
    return first.reset_index(drop=True)
