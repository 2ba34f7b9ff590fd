"""Reading a split folder written by ``neuromask split`` or by ClinicaDL's ``tsvtools``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuromask.errors import MissingFileError, TableError
from neuromask.io.layout import CLINICADL_SINGLE, NEUROMASK, SplitLayout
from neuromask.io.participants import ALL_COLUMNS, read_participants


@dataclass
class SplitFolder:
    path: Path
    train_val: pd.DataFrame
    folds: dict[int, tuple[pd.DataFrame, pd.DataFrame]]
    #: The layout found (:meth:`~neuromask.io.layout.SplitLayout.kind`).
    kind: str = NEUROMASK


def available_splits(split_dir: str | os.PathLike[str]) -> list[int]:
    return SplitLayout(split_dir).splits()


def _fold_table(layout: SplitLayout, k: int, part: str, existing: list[int]) -> pd.DataFrame:
    path = layout.find_tsv(k, part)
    if not path.is_file():
        where = "" if layout.kind() == CLINICADL_SINGLE else f"split-{k}/"
        names = f"{part}.tsv" + ("" if layout.kind() == NEUROMASK else f" or {part}_baseline.tsv")
        raise MissingFileError(
            f"Split folder {layout.root} ({layout.kind()} layout) lacks {where}{names}"
            + (f" (splits found: {existing})" if k not in existing else "")
        )
    required = ALL_COLUMNS if layout.kind() == NEUROMASK else ("diagnosis",)
    return read_participants(path, required=required)


def read_split_folder(
    split_dir: str | os.PathLike[str], splits: list[int] | None = None
) -> SplitFolder:
    """The train and validation tables of the chosen splits, and every session of the
    training and validation subjects (``train_val``).

    Reads neuromask's layout (``train_val.tsv`` and ``split-<k>/``; every file must exist,
    every fold row must be in ``train_val.tsv``) and the layouts of ``clinicadl tsvtools
    kfold`` and ``split`` (:meth:`~neuromask.io.layout.SplitLayout.kind`), where
    ``train_val`` is the union of every fold's tables and only ``diagnosis`` is required.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise MissingFileError(f"Split folder {split_dir} does not exist.")
    layout = SplitLayout(split_dir)
    kind = layout.kind()
    existing = available_splits(split_dir)
    chosen = existing if splits is None else sorted(set(splits))
    if not existing:
        raise MissingFileError(
            f"Split folder {split_dir} holds neither train_val.tsv (run `neuromask split`) "
            "nor split-<k> folders (`clinicadl tsvtools kfold`) nor train.tsv "
            "(`clinicadl tsvtools split`)."
        )
    folds = {k: (_fold_table(layout, k, "train", existing),
                 _fold_table(layout, k, "validation", existing)) for k in chosen}  # fmt: skip
    if kind == NEUROMASK:
        train_val = read_participants(layout.train_val_tsv)
        _check_within(folds, train_val, layout)
    else:
        every = [t for k in existing for t in (folds.get(k) or _both(layout, k, existing))]
        train_val = (
            pd.concat(every, ignore_index=True)
            .drop_duplicates(["participant_id", "session_id"])
            .reset_index(drop=True)
        )
    return SplitFolder(split_dir, train_val, folds, kind)


def _both(layout: SplitLayout, k: int, existing: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _fold_table(layout, k, "train", existing), _fold_table(layout, k, "validation", existing)


def _check_within(
    folds: dict[int, tuple[pd.DataFrame, pd.DataFrame]],
    train_val: pd.DataFrame,
    layout: SplitLayout,
) -> None:
    keys = set(zip(train_val["participant_id"], train_val["session_id"], strict=True))
    for k, tables in folds.items():
        for part, table in zip(("train", "validation"), tables, strict=True):
            for p, ses in zip(table["participant_id"], table["session_id"], strict=True):
                if (p, ses) not in keys:
                    raise TableError(
                        f"{layout.fold_tsv(k, part)}: {p} {ses} is not in {layout.train_val_tsv}"
                    )


def row_indices(reference: pd.DataFrame, subset: pd.DataFrame) -> list[int]:
    """Positions in ``reference`` of the (participant, session) rows of ``subset``."""
    position = {
        key: i
        for i, key in enumerate(
            zip(reference["participant_id"], reference["session_id"], strict=True)
        )
    }
    return [
        position[key] for key in zip(subset["participant_id"], subset["session_id"], strict=True)
    ]


def split_hashes(split_dir: str | os.PathLike[str], split: int) -> dict[str, str]:
    """SHA-256 of split ``split``'s training and validation tables, as a model records
    them: a later command can tell that the split folder changed since."""
    layout = SplitLayout(split_dir)
    return {
        part: hashlib.sha256(layout.find_tsv(split, part).read_bytes()).hexdigest()
        for part in ("train", "validation")
    }
