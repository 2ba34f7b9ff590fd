"""Study configuration: one TOML file with the data, the training, the masks and the sizes.

Tables (all optional except ``[data]`` for user data):

- ``[data]``: ``caps``, ``split_dir`` (from ``neuromask split``), and for the independent
  cohort ``independent_caps`` and ``independent_tsv``; or ``synthetic = true`` to
  synthesise an ADNI-like and an AIBL-like cohort into the study folder first (sizes in
  ``[data]`` too: ``voxel_size``, ``subjects_per_class``, ``independent_subjects_per_class``,
  ``atrophy_rois``, ``atrophy_heterogeneity``, ``atrophy_strength``, ``atrophy_blobs``,
  ``test_subjects_per_class``,
  ``p_threshold``, ``seed``);
- ``[study]``: ``folds``, ``runs``, ``session_subjects`` (0 = all), ``heartbeat_s``;
- ``[train]``: the training settings, as ``neuromask train --config`` reads them;
- ``[mask]``: group-mask settings over the ``group`` preset; ``[independent_mask]``: for
  the independent cohort, over ``small-cohort``; ``[session_mask]``: over ``session``.
  Each may name another mask preset (``preset = "paper"``) under its other keys;
- ``[mask_grid]``: the values of the hyperparameter grid and the fixed partners: the beta
  grids run at ``beta_lambda1`` / ``beta_lambda2`` (the paper's 1e-4 / 1e-3), and the
  ``slow_lambda2`` point (0.1) at ``slow_learning_rate`` (0.01), as the paper's Figure 4.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from neuromask.config import ConfigError, from_mapping, read_toml, to_mapping
from neuromask.explain import MaskConfig, mask_preset
from neuromask.explain.presets import preset_with
from neuromask.train.config import (
    TrainConfig,
    train_config_from_mapping,
    train_config_to_toml_mapping,
)

STUDIES = ("cnn", "mask-grid", "group", "session", "training")


@dataclass(frozen=True)
class DataConfig:
    caps: str = ""
    split_dir: str = ""
    independent_caps: str = ""
    independent_tsv: str = ""
    synthetic: bool = False
    voxel_size: float = 3.0
    subjects_per_class: int = 40
    independent_subjects_per_class: int = 20
    atrophy_rois: tuple[str, ...] = ("random:4",)
    atrophy_heterogeneity: float = 0.5
    atrophy_strength: float = 0.35
    atrophy_blobs: int = 0
    test_subjects_per_class: int = 8
    #: Smallest p-value (age, sex) allowed between the test set and the rest.
    p_threshold: float = 0.8
    seed: int = 0


@dataclass(frozen=True)
class SizeConfig:
    folds: int = 5
    runs: int = 5
    session_subjects: int = 0
    heartbeat_s: int = 60


@dataclass(frozen=True)
class GridConfig:
    """The paper's grid: each hyperparameter varied with its partner fixed."""

    beta1: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)
    beta2: tuple[float, ...] = (1.0, 2.0, 3.0)
    lambda1: tuple[float, ...] = (0.1, 0.01, 0.001, 0.0001)
    lambda2: tuple[float, ...] = (0.1, 0.01, 0.001, 0.0001)
    #: beta2 while beta1 varies, beta1 while beta2 varies, and so on.
    fixed_beta1: float = 0.1
    fixed_beta2: float = 1.0
    fixed_lambda1: float = 0.0001
    fixed_lambda2: float = 0.01
    #: lambda1 and lambda2 while a beta varies (the paper's partners for its beta grids).
    beta_lambda1: float = 0.0001
    beta_lambda2: float = 0.001
    #: The lambda2 grid point that runs at its own learning rate, as the paper's Figure 4
    #: (lambda2 = 0.1 at 0.01).
    slow_lambda2: float = 0.1
    slow_learning_rate: float = 0.01

    def settings(self, base: MaskConfig) -> list[tuple[str, float, MaskConfig]]:
        """(parameter, value, mask settings) for every point of the grid. The grid varies
        the paper's size term on the paper's voxel-level mask, so its points run without
        the area constraint, the coarse lattice, the healthy reference and the gradient
        trace of the defaults (``area = 0``, ``upsample = 1``, no fine stage, mu = 1, the
        score as it is, ``trace_depth = 0``); the other settings are ``base``'s."""
        lambdas = {"lambda1": self.beta_lambda1, "lambda2": self.beta_lambda2}
        partners = {
            "beta1": {"beta2": self.fixed_beta2, **lambdas},
            "beta2": {"beta1": self.fixed_beta1, **lambdas},
            "lambda1": {"lambda2": self.fixed_lambda2},
            "lambda2": {"lambda1": self.fixed_lambda1},
        }
        out = []
        for name, fixed in partners.items():
            for value in getattr(self, name):
                fields: dict[str, Any] = {
                    "area": 0.0,
                    "larger_areas": (),
                    "refine_epochs": 0,
                    "upsample": 1,
                    "reference": "constant",
                    "score_normalisation": "none",
                    "trace_depth": 0.0,
                    **fixed,
                    name: float(value),
                }
                if name == "lambda2" and float(value) == self.slow_lambda2:
                    fields["learning_rate"] = self.slow_learning_rate
                out.append((name, float(value), dataclasses.replace(base, **fields)))
        return out


@dataclass(frozen=True)
class StudyConfig:
    data: DataConfig = field(default_factory=DataConfig)
    study: SizeConfig = field(default_factory=SizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mask: MaskConfig = field(default_factory=lambda: mask_preset("group"))
    independent_mask: MaskConfig = field(default_factory=lambda: mask_preset("small-cohort"))
    session_mask: MaskConfig = field(default_factory=lambda: mask_preset("session"))
    mask_grid: GridConfig = field(default_factory=GridConfig)

    def to_toml_mapping(self) -> dict[str, Any]:
        return {
            "data": to_mapping(self.data),
            "study": to_mapping(self.study),
            "train": train_config_to_toml_mapping(self.train),
            "mask": to_mapping(self.mask),
            "independent_mask": to_mapping(self.independent_mask),
            "session_mask": to_mapping(self.session_mask),
            "mask_grid": to_mapping(self.mask_grid),
        }


def _over(preset: MaskConfig, data: dict[str, Any], source: str) -> MaskConfig:
    """A mask table: ``preset = "NAME"`` (a mask preset) or the table's default preset,
    with the table's other keys on top."""
    return preset_with(data, preset, source)


def study_config_from_mapping(data: dict[str, Any], source: str) -> StudyConfig:
    known = {"data", "study", "train", "mask", "independent_mask", "session_mask", "mask_grid"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    for name in known:
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
    config = StudyConfig(
        data=from_mapping(DataConfig, data.get("data", {}), source=source, prefix="data."),
        study=from_mapping(SizeConfig, data.get("study", {}), source=source, prefix="study."),
        train=train_config_from_mapping(data.get("train", {}), source=f"{source} [train]"),
        mask=_over(mask_preset("group"), data.get("mask", {}), f"{source} [mask]"),
        independent_mask=_over(
            mask_preset("small-cohort"),
            data.get("independent_mask", {}),
            f"{source} [independent_mask]",
        ),
        session_mask=_over(
            mask_preset("session"), data.get("session_mask", {}), f"{source} [session_mask]"
        ),
        mask_grid=from_mapping(
            GridConfig, data.get("mask_grid", {}), source=source, prefix="mask_grid."
        ),
    )
    d = config.data
    if not d.synthetic and not (d.caps and d.split_dir):
        raise ConfigError(f"{source}: [data] needs caps and split_dir (or synthetic = true)")
    if config.study.folds < 1 or config.study.runs < 1:
        raise ConfigError(f"{source}: [study] folds and runs must be at least 1")
    for name in ("mask", "independent_mask", "session_mask"):
        if getattr(config, name).reference == "cn_mean":
            raise ConfigError(
                f"{source}: [{name}] reference must be 'constant' or 'healthy' in a "
                "study (its cross-applied CNN probabilities fill deleted voxels as the "
                "masks did); the 'cn_mean' reference is for `neuromask mask` jobs"
            )
    return config


def preset_names() -> list[str]:
    return sorted(
        Path(p.name).stem
        for p in resources.files("neuromask.studies.presets").iterdir()
        if p.name.endswith(".toml")
    )


def load_study_config(path_or_preset: str | os.PathLike[str]) -> tuple[StudyConfig, str]:
    """A study config from a TOML file, or from a preset shipped with neuromask
    (``small`` or ``paper``). Returns the config and the TOML text it came from."""
    path = Path(path_or_preset)
    if not path.is_file() and str(path_or_preset) in preset_names():
        text = (resources.files("neuromask.studies.presets") / f"{path_or_preset}.toml").read_text()
        import tomllib

        return study_config_from_mapping(tomllib.loads(text), f"preset {path_or_preset}"), text
    data = read_toml(path)
    return study_config_from_mapping(data, str(path)), path.read_text()
