"""Reading a split folder written by ``neuromask split``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuromask.errors import MissingFileError, TableError
from neuromask.io.layout import SplitLayout
from neuromask.io.participants import read_participants


@dataclass
class SplitFolder:
    path: Path
    train_val: pd.DataFrame
    folds: dict[int, tuple[pd.DataFrame, pd.DataFrame]]


def available_splits(split_dir: str | os.PathLike[str]) -> list[int]:
    return SplitLayout(split_dir).splits()


def read_split_folder(
    split_dir: str | os.PathLike[str], splits: list[int] | None = None
) -> SplitFolder:
    """``train_val.tsv`` and the train and validation tables of the chosen splits.

    Every file must exist; every training and validation row must be in ``train_val.tsv``.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise MissingFileError(f"Split folder {split_dir} does not exist.")
    layout = SplitLayout(split_dir)
    train_val_path = layout.train_val_tsv
    if not train_val_path.is_file():
        raise MissingFileError(
            f"Split folder {split_dir} lacks train_val.tsv (run `neuromask split`)."
        )
    train_val = read_participants(train_val_path)
    existing = available_splits(split_dir)
    chosen = existing if splits is None else sorted(set(splits))
    if not chosen:
        raise MissingFileError(f"Split folder {split_dir} holds no split-<k> folder.")
    keys = set(zip(train_val["participant_id"], train_val["session_id"], strict=True))
    folds = {}
    for k in chosen:
        tables = []
        for name in ("train", "validation"):
            path = layout.fold_tsv(k, name)
            if not path.is_file():
                raise MissingFileError(
                    f"Split folder {split_dir} lacks split-{k}/{name}.tsv"
                    + (f" (splits found: {existing})" if k not in existing else "")
                )
            table = read_participants(path)
            missing = [
                (p, s)
                for p, s in zip(table["participant_id"], table["session_id"], strict=True)
                if (p, s) not in keys
            ]
            if missing:
                raise TableError(
                    f"{path}: {missing[0][0]} {missing[0][1]} is not in {train_val_path}"
                )
            tables.append(table)
        folds[k] = (tables[0], tables[1])
    return SplitFolder(split_dir, train_val, folds)


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
        part: hashlib.sha256(layout.fold_tsv(split, part).read_bytes()).hexdigest()
        for part in ("train", "validation")
    }
