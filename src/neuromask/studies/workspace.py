"""A study folder as a workspace of jobs shared by every study run with the same settings.

Trainings, masks and evaluations are jobs keyed by what they compute, so the ``group``
study reuses the trainings of the ``cnn`` study, and a rerun reuses everything finished.
A job is a spec (a JSON mapping) that any worker turns back into its work with
:meth:`Workspace.resolve`: each job kind has one method that does it. Paths come from
:class:`neuromask.io.layout.StudyLayout`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuromask.config import from_mapping, to_mapping
from neuromask.explain import MaskConfig
from neuromask.io.atlas import Atlas
from neuromask.io.layout import StudyLayout
from neuromask.io.participants import read_participants, write_tsv
from neuromask.models.inference import Fill
from neuromask.studies.config import StudyConfig
from neuromask.studies.engine import Job
from neuromask.train.splits_io import read_split_folder

#: Mask settings added after studies had named their masks' folders by their settings,
#: each with the value at which it changes nothing: left out of the name there, so that
#: a study started before they existed resumes into the folders it made. Those of
#: ``LADDER_SETTINGS`` act only on the larger areas of a group mask, so they are also
#: left out of a mask that has none (``config.areas`` of one area: session, voxel and
#: paper masks).
ADDED_SETTINGS = {
    "larger_area_epochs": 0,
    "larger_area_gain": 0.0,
    "larger_area_skip_above": 0.0,
    "convolution": "auto",
    "validate_every": 1,
}
LADDER_SETTINGS = ("larger_area_epochs", "larger_area_gain", "larger_area_skip_above")


def settings_key(config: MaskConfig) -> str:
    """A short, stable name for a set of mask settings."""
    one_area = len(config.areas) == 1

    def named(key: str, value: object) -> bool:
        if key not in ADDED_SETTINGS:
            return True
        return value != ADDED_SETTINGS[key] and not (one_area and key in LADDER_SETTINGS)

    mapping = {k: v for k, v in to_mapping(config).items() if named(k, v)}
    text = json.dumps(mapping, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Workspace:
    out: Path
    config: StudyConfig
    progress: bool = True
    device: str = "auto"
    _models: dict[tuple[int, int], tuple[torch.nn.Module, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )
    _independent: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)
    _fills: dict[tuple[int, int, int], Fill] = field(default_factory=dict, repr=False)

    @property
    def layout(self) -> StudyLayout:
        return StudyLayout(self.out)

    # ------------------------------------------------------------------ data
    @property
    def caps(self) -> Path:
        if self.config.data.synthetic:
            return self.layout.cohort("adni").caps
        return Path(self.config.data.caps)

    @property
    def split_dir(self) -> Path:
        if self.config.data.synthetic:
            return self.layout.split.root
        return Path(self.config.data.split_dir)

    @property
    def independent(self) -> tuple[Path, Path] | None:
        """The independent cohort's CAPS folder and sessions, when the study has one."""
        d = self.config.data
        if d.synthetic:
            return self.layout.cohort("aibl").caps, self.layout.qc("aibl").passed
        if d.independent_caps and d.independent_tsv:
            return Path(d.independent_caps), Path(d.independent_tsv)
        return None

    def independent_baseline(self) -> tuple[Path, Path]:
        """The independent cohort's CAPS folder and one session per subject, its baseline
        (earliest), as the paper's independent test set; written next to the study's data
        the first time it is asked for."""
        from neuromask.io.participants import baseline_sessions

        source = self.independent
        if source is None:
            raise ValueError("this study has no independent cohort")
        caps, tsv = source
        out = self.layout.independent_baseline
        if not out.is_file():
            write_tsv(baseline_sessions(read_participants(tsv)), out)
        return caps, out

    @property
    def cache(self) -> Path:
        return self.layout.cache

    def model_dir(self, split: int, run: int) -> Path:
        return self.layout.model_dir(split, run)

    def mask_dir(self, split: int, run: int, cohort: str, config: MaskConfig) -> Path:
        return self.layout.mask_dir(split, run, cohort, settings_key(config))

    def session_dir(self, config: MaskConfig | None = None) -> Path:
        return self.layout.session_dir(settings_key(config or self.config.session_mask))

    # ------------------------------------------------------------------ jobs
    def data_job(self) -> Job:
        return Job("data/synthesize", {"kind": "data"})

    def train_job(self, split: int, run: int) -> Job:
        return Job(f"train/split-{split}/run-{run}", {"kind": "train", "split": split, "run": run})

    def evaluate_job(self, split: int, run: int, name: str) -> Job:
        return Job(
            f"evaluate/split-{split}/run-{run}/{name}",
            {"kind": "evaluate", "split": split, "run": run, "name": name},
        )

    def group_mask_job(self, split: int, run: int, cohort: str, config: MaskConfig) -> Job:
        return Job(
            f"mask/split-{split}/run-{run}/{cohort}/{settings_key(config)}",
            {
                "kind": "group_mask",
                "split": split,
                "run": run,
                "cohort": cohort,
                "mask": to_mapping(config),
            },
        )

    def session_job(self) -> Job:
        config = self.config.session_mask
        return Job(
            f"sessions/split-0/run-0/{settings_key(config)}",
            {"kind": "sessions", "mask": to_mapping(config)},
        )

    def resolve(self, spec: dict[str, Any]) -> Callable[[], object]:
        """The work of a job, rebuilt from its spec (any worker can run any job)."""
        from neuromask.studies import work

        kinds: dict[str, Callable[[Workspace, dict[str, Any]], None]] = {
            "data": work.synthesize,
            "train": work.train,
            "evaluate": work.evaluate,
            "group_mask": work.group_mask,
            "sessions": work.sessions,
        }
        if spec["kind"] not in kinds:
            raise ValueError(f"unknown job kind {spec['kind']!r}")
        return functools.partial(kinds[spec["kind"]], self, spec)

    @staticmethod
    def mask_config(spec: dict[str, Any]) -> MaskConfig:
        return from_mapping(MaskConfig, spec["mask"], source="job spec")

    def sessions_tsv(self) -> Path:
        """AD sessions of split 0's training and validation subjects that have at least two
        sessions (``session_subjects`` of them, 0 = all), for the session study."""
        path = self.layout.sessions_tsv
        table = read_split_folder(self.split_dir, [0]).train_val
        ad = table[table["diagnosis"] == "AD"]
        counts = ad.groupby("participant_id")["session_id"].count()
        subjects = sorted(counts[counts >= 2].index)
        n = self.config.study.session_subjects
        if n:
            subjects = subjects[:n]
        chosen = ad[ad["participant_id"].isin(subjects)]
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tsv(chosen, path)
        return path

    # ------------------------------------------------------------------ for the tables
    def load_mask(self, path: Path) -> np.ndarray:
        from neuromask.io.nifti import load_volume

        return load_volume(path)[0]

    @functools.cached_property
    def _atlas(self) -> Atlas:
        from neuromask.io.atlas import default_atlas
        from neuromask.io.nifti import read_grid

        first = next(self.layout.masks.rglob("mask.nii.gz"), None)
        if first is None:
            first = next(self.session_dir().glob("*_mask.nii.gz"))
        return default_atlas(read_grid(first))

    def atlas(self) -> Atlas:
        """AAL2 on the masks' grid (resampled once per workspace)."""
        return self._atlas

    def model_and_images(self, split: int, run: int) -> tuple[torch.nn.Module, torch.Tensor]:
        """A trained model and its validation AD images, loaded once per workspace."""
        key = (split, run)
        if key not in self._models:
            from neuromask.jobs.compare import model_validation_images

            self._models[key] = model_validation_images(
                self.model_dir(split, run), self.device, self.cache, False
            )
        return self._models[key]

    def fill(self, split: int, run: int, config: MaskConfig) -> Fill:
        """What the deleted voxels of the masks that the model of (split, run) scores
        take, as its masks were trained: ``mu``, or for ``reference = "healthy"`` healthy
        tissue from that model's CN training sessions (prob_CNN fills as the masks did)."""
        if config.reference != "healthy":
            return config.mu
        key = (split, run, config.seed)
        if key not in self._fills:
            from neuromask.explain.reference import HealthyReference
            from neuromask.jobs.trained_model import TrainedModel
            from neuromask.train.model_folder import read_model_record

            model, _ = self.model_and_images(split, run)
            folder = self.model_dir(split, run)
            trained = TrainedModel(folder, model, read_model_record(folder))
            sessions = trained.training_cn_sessions(config.seed, cache_dir=self.cache)
            self._fills[key] = HealthyReference(sessions, next(model.parameters()).device)
        return self._fills[key]

    def independent_images(self, split: int, run: int) -> torch.Tensor:
        """The independent cohort's baseline AD sessions that the model of (split, run)
        classifies correctly: the images its independent group mask was trained on."""
        from neuromask.jobs.trained_model import load_ad_sessions
        from neuromask.train.model_folder import read_model_record

        key = (split, run)
        if key not in self._independent:
            model, _ = self.model_and_images(split, run)
            record = read_model_record(self.model_dir(split, run))
            caps, tsv = self.independent_baseline()
            inputs = load_ad_sessions(
                model, record, caps, tsv, cache_dir=self.cache, progress=False
            )
            self._independent[key] = inputs.images
        return self._independent[key]
