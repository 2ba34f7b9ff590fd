"""Every folder layout that neuromask reads or writes, in one place.

Nothing else in the package builds these paths: commands, studies and the report ask
the classes below. Each class wraps the root of one kind of folder:

- :class:`SplitLayout`: what ``neuromask split`` writes (``test.tsv``, ``train_val.tsv``,
  ``split-<k>/train.tsv``, ``split-<k>/validation.tsv``, ``summary.tsv``, ``split.json``);
- :func:`run_dir` / :data:`RUN_GLOB`: the run folders of ``neuromask train``
  (``OUT/split-<k>/run-<r>/``);
- :class:`CohortLayout` and :class:`TruthLayout`: a synthetic cohort (``caps/``,
  ``participants.tsv``, ``ground_truth/``);
- :class:`QCLayout`: what ``neuromask qc`` writes;
- :class:`StudyLayout`: a study folder, which holds all of the above.

>>> StudyLayout("study").model_dir(1, 0).as_posix()
'study/models/split-1/run-0'
>>> SplitLayout("split").validation_tsv(2).as_posix()
'split/split-2/validation.tsv'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Run folders below a training output folder.
RUN_GLOB = "split-*/run-*"
#: The record each command writes into its output folder; ``--overwrite`` replaces a
#: folder only if it holds the record of the same command.
SPLIT_RECORD = "split.json"
QC_RECORD = "qc.json"
SYNTH_RECORD = "ground_truth/synth.json"
EVALUATION_RECORD = "metrics.json"
_SPLIT = re.compile(r"split-(\d+)")
#: The split-folder layouts :meth:`SplitLayout.kind` tells apart.
NEUROMASK = "neuromask"
CLINICADL_KFOLD = "ClinicaDL kfold"
CLINICADL_SINGLE = "ClinicaDL split"
#: What each layout holds, for messages.
LAYOUT_FILES = {
    NEUROMASK: "train_val.tsv, split-<k>/train.tsv and validation.tsv",
    CLINICADL_KFOLD: "split-<k>/train.tsv and validation_baseline.tsv",
    CLINICADL_SINGLE: "train.tsv and validation_baseline.tsv, one split",
}
_RUN = re.compile(r"run-(\d+)")


def split_name(split: int) -> str:
    return f"split-{split}"


def split_number(name: str) -> int | None:
    """``k`` of a folder named ``split-<k>``, None for any other name."""
    match = _SPLIT.fullmatch(name)
    return int(match.group(1)) if match else None


def run_dir(root: str | os.PathLike[str], split: int, run: int) -> Path:
    """``ROOT/split-<k>/run-<r>``: one training run."""
    return Path(root) / split_name(split) / f"run-{run}"


def run_of(run_folder: Path) -> tuple[int, int]:
    """(split, run) of a folder ``.../split-<k>/run-<r>``."""
    split, run = split_number(run_folder.parent.name), _RUN.fullmatch(run_folder.name)
    if split is None or run is None:
        raise ValueError(f"{run_folder} is not a run folder (split-<k>/run-<r>)")
    return split, int(run.group(1))


@dataclass(frozen=True)
class SplitLayout:
    """A split folder, as ``neuromask split`` writes it."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def test_tsv(self) -> Path:
        return self.root / "test.tsv"

    @property
    def train_val_tsv(self) -> Path:
        return self.root / "train_val.tsv"

    @property
    def summary_tsv(self) -> Path:
        return self.root / "summary.tsv"

    @property
    def record(self) -> Path:
        return self.root / SPLIT_RECORD

    def fold_dir(self, split: int) -> Path:
        return self.root / split_name(split)

    def fold_tsv(self, split: int, part: str) -> Path:
        """``split-<k>/<part>.tsv`` with part ``train`` or ``validation``."""
        return self.fold_dir(split) / f"{part}.tsv"

    def train_tsv(self, split: int) -> Path:
        return self.fold_tsv(split, "train")

    def validation_tsv(self, split: int) -> Path:
        return self.fold_tsv(split, "validation")

    def splits(self) -> list[int]:
        """The ``k`` of every ``split-<k>`` folder present, in order (``[0]`` for the single
        split of ``clinicadl tsvtools split``)."""
        found = (split_number(child.name) for child in self.root.glob("split-*") if child.is_dir())
        ks = sorted(k for k in found if k is not None)
        return ks or ([0] if self.kind() == CLINICADL_SINGLE else [])

    # ---- reading: neuromask's layout or ClinicaDL's
    def kind(self) -> str:
        """Which layout the folder holds, for reading: :data:`NEUROMASK` (``neuromask split``:
        ``train_val.tsv`` and ``split-<k>/``), :data:`CLINICADL_KFOLD` (``clinicadl tsvtools
        kfold``: ``split-<k>/`` without ``train_val.tsv``) or :data:`CLINICADL_SINGLE`
        (``clinicadl tsvtools split``: ``train.tsv`` at the top, read as split 0)."""
        folds = any(self.root.glob("split-*"))
        if self.train_val_tsv.is_file() or not (folds or (self.root / "train.tsv").is_file()):
            return NEUROMASK
        return CLINICADL_KFOLD if folds else CLINICADL_SINGLE

    def describe(self) -> str:
        """One line saying which layout the folder holds, e.g. for the command line."""
        kind = self.kind()
        return f"Split folder {self.root}: {kind} layout ({LAYOUT_FILES[kind]})."

    def find_tsv(self, split: int, part: str) -> Path:
        """The table of ``part`` (``train`` or ``validation``) of split ``split`` as this
        folder holds it: ``<part>.tsv``, else ClinicaDL's ``<part>_baseline.tsv`` (what
        ClinicaDL validates on unless trained with ``--valid_longitudinal``)."""
        folder = self.root if self.kind() == CLINICADL_SINGLE else self.fold_dir(split)
        plain = folder / f"{part}.tsv"
        baseline = folder / f"{part}_baseline.tsv"
        return baseline if not plain.is_file() and baseline.is_file() else plain

    def find_test_tsv(self) -> Path:
        """The test table: ``test.tsv``; in ClinicaDL's layouts ``test_baseline.tsv`` here
        or, for a ``<N>_fold`` folder made inside a ``split`` folder, one level up."""
        if self.kind() == NEUROMASK or self.test_tsv.is_file():
            return self.test_tsv
        for folder in (self.root, self.root.parent):
            if (folder / "test_baseline.tsv").is_file():
                return folder / "test_baseline.tsv"
        return self.test_tsv


@dataclass(frozen=True)
class TruthLayout:
    """A synthetic cohort's ``ground_truth`` folder."""

    root: Path

    @property
    def atrophy_rois(self) -> Path:
        return self.root / "atrophy_rois.tsv"

    @property
    def atrophy_map(self) -> Path:
        return self.root / "atrophy_map.nii.gz"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions.tsv"

    @property
    def subject_atrophy(self) -> Path:
        return self.root / "subject_atrophy.tsv"

    @property
    def record(self) -> Path:
        return self.root / Path(SYNTH_RECORD).name

    def exists(self) -> bool:
        return self.atrophy_rois.is_file()


@dataclass(frozen=True)
class CohortLayout:
    """A synthetic cohort, as ``neuromask synth`` writes it."""

    root: Path

    @property
    def caps(self) -> Path:
        return self.root / "caps"

    @property
    def participants(self) -> Path:
        return self.root / "participants.tsv"

    @property
    def truth(self) -> TruthLayout:
        return TruthLayout(self.root / "ground_truth")


@dataclass(frozen=True)
class QCLayout:
    """What ``neuromask qc`` writes."""

    root: Path

    @property
    def table(self) -> Path:
        return self.root / "qc.tsv"

    @property
    def passed(self) -> Path:
        return self.root / "pass.tsv"

    @property
    def figure(self) -> Path:
        return self.root / "qc.png"

    @property
    def record(self) -> Path:
        return self.root / QC_RECORD


#: The cohorts of a synthetic study: the ADNI-like one (trained on) and the AIBL-like
#: independent one.
STUDY_COHORTS = ("adni", "aibl")


@dataclass(frozen=True)
class StudyLayout:
    """A study folder (``neuromask study``, ``neuromask demo``).

    ``study.toml`` (the settings), ``jobs.db`` (the job engine's storage), ``data/`` (the
    synthetic cohorts, their QC and the split), ``cache/``, ``models/split-<k>/run-<r>/``,
    ``masks/split-<k>/run-<r>/<cohort>/<settings>/``, ``sessions/`` and one folder of
    tables per study (``cnn/``, ``mask-grid/``, ``group/``, ``session/``, ``training/``),
    ``sanity/`` and ``report/``.
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def settings(self) -> Path:
        return self.root / "study.toml"

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.db"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    # ---- synthetic data
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def data_done(self) -> Path:
        return self.data / "done.json"

    @property
    def independent_baseline(self) -> Path:
        """The independent cohort's baseline sessions (one per subject)."""
        return self.data / "independent_baseline.tsv"

    def cohort(self, name: str) -> CohortLayout:
        return CohortLayout(self.data / name / "synth")

    def qc(self, name: str) -> QCLayout:
        return QCLayout(self.data / name / "qc")

    @property
    def split(self) -> SplitLayout:
        return SplitLayout(self.data / "adni" / "split")

    @property
    def truth(self) -> TruthLayout:
        """The ground truth of the synthetic ADNI-like cohort."""
        return self.cohort("adni").truth

    # ---- models and masks
    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_dir(self, split: int, run: int) -> Path:
        return run_dir(self.models, split, run)

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    def mask_dir(self, split: int, run: int, cohort: str, settings: str) -> Path:
        return run_dir(self.masks, split, run) / cohort / settings

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def sessions_tsv(self) -> Path:
        return self.sessions / "sessions.tsv"

    def session_dir(self, settings: str) -> Path:
        return self.sessions / settings

    # ---- results
    def tables(self, study: str) -> Path:
        """The folder of one study's tables and figures (``cnn``, ``group``, ...)."""
        return self.root / study

    @property
    def sanity(self) -> Path:
        return self.root / "sanity"

    @property
    def report(self) -> Path:
        return self.root / "report"


# ---------------------------------------------------------------------- recorded paths
def study_root_of(folder: Path) -> Path | None:
    """The study folder (the nearest one holding ``study.toml``) that ``folder`` lies in."""
    for candidate in (folder, *folder.parents):
        if (candidate / "study.toml").is_file():
            return candidate
    return None


def record_path(path: str | os.PathLike[str], record_dir: str | os.PathLike[str]) -> str:
    """How a record written in ``record_dir`` names ``path``.

    The rule, for every record neuromask writes: a path inside the same study folder as
    the record is stored relative to the record's folder, so that a study folder moved
    as a whole still works; any other path is stored absolute, so that the record means
    the same thing from any working folder. :func:`recorded_path` reads it back.
    """
    target = Path(path).resolve()
    home = Path(record_dir).resolve()
    root = study_root_of(home)
    if root is not None and (target == root or root in target.parents):
        return os.path.relpath(target, home)
    return str(target)


def recorded_path(value: str, record_dir: str | os.PathLike[str]) -> Path:
    """A path named by a record in ``record_dir`` (see :func:`record_path`). Records of
    older versions named relative paths from the working folder; those are read from the
    record's folder too, which is right whenever the study or model folder was written
    in place."""
    path = Path(value)
    return path if path.is_absolute() else (Path(record_dir) / path).resolve()
