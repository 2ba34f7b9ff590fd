"""The layout of a ClinicaDL (1.x) MAPS, a trained model folder that neuromask reads.

Nothing else in the package builds these paths (as :mod:`neuromask.io.layout` does for
neuromask's own folders).

A MAPS::

    MAPS/maps.json                                   every training setting
    MAPS/split-<k>/best-<metric>/model.pth.tar       {"model": state_dict, "epoch", "name"}
    MAPS/groups/{train,validation}/split-<k>/data.tsv  the sessions of each split

(MAPS of ClinicaDL before 1.0 name ``fold-<k>`` where later ones name ``split-<k>``.)

ClinicaDL's split folders are read by :class:`neuromask.io.layout.SplitLayout`, which
tells them from neuromask's own.

>>> MapsLayout("maps").model_file(0, "loss").as_posix()
'maps/split-0/best-loss/model.pth.tar'
>>> MapsLayout("maps").group_tsv("validation", 1).as_posix()
'maps/groups/validation/split-1/data.tsv'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MAPS_RECORD = "maps.json"
MODEL_FILE = "model.pth.tar"
_FOLD = re.compile(r"(split|fold)-(\d+)")
_BEST = re.compile(r"best-(.+)")


@dataclass(frozen=True)
class MapsLayout:
    """A ClinicaDL MAPS folder."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def record(self) -> Path:
        return self.root / MAPS_RECORD

    def is_maps(self) -> bool:
        return self.record.is_file()

    @property
    def split_word(self) -> str:
        """``split``, or ``fold`` in a MAPS that names its folders ``fold-<k>``."""
        found = {m.group(1) for m in map(_FOLD.fullmatch, self._children()) if m}
        return "fold" if found == {"fold"} else "split"

    def _children(self) -> list[str]:
        return [c.name for c in self.root.iterdir() if c.is_dir()] if self.root.is_dir() else []

    def splits(self) -> list[int]:
        """Every ``k`` with a ``split-<k>`` (or ``fold-<k>``) folder, in order."""
        found = (_FOLD.fullmatch(name) for name in self._children())
        return sorted({int(m.group(2)) for m in found if m})

    def split_dir(self, split: int) -> Path:
        return self.root / f"{self.split_word}-{split}"

    def selection_metrics(self, split: int) -> list[str]:
        """The metrics with a ``best-<metric>`` folder holding a model in split ``split``."""
        folder = self.split_dir(split)
        if not folder.is_dir():
            return []
        found = (_BEST.fullmatch(c.name) for c in folder.iterdir() if (c / MODEL_FILE).is_file())
        return sorted(m.group(1) for m in found if m)

    def selection_dir(self, split: int, metric: str) -> Path:
        return self.split_dir(split) / f"best-{metric}"

    def model_file(self, split: int, metric: str) -> Path:
        return self.selection_dir(split, metric) / MODEL_FILE

    def group_tsv(self, group: str, split: int) -> Path:
        """The sessions of ``group`` (``train`` or ``validation``) in split ``split``."""
        return self.root / "groups" / group / f"{self.split_word}-{split}" / "data.tsv"


def maps_of_selection_dir(folder: str | os.PathLike[str]) -> tuple[MapsLayout, int, str] | None:
    """(MAPS, split, metric) when ``folder`` is ``MAPS/split-<k>/best-<metric>``."""
    folder = Path(folder)
    fold = _FOLD.fullmatch(folder.parent.name)
    best = _BEST.fullmatch(folder.name)
    maps = MapsLayout(folder.parent.parent)
    if fold is None or best is None or not maps.is_maps():
        return None
    return maps, int(fold.group(2)), best.group(1)
