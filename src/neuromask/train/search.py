"""Random search over the paper's space with Optuna: ``neuromask search``.

One trial samples an architecture and training settings, trains run 0 of one split
(split 0 by default) and scores its best validation balanced accuracy. Trials live in an
Optuna storage: an SQLite file in the output folder by default (embedded, no server), or
any storage URL (PostgreSQL) so that workers on several machines share one study.

- Each trial trains into ``OUT/trials/<key>/``, where the key is a hash of its settings:
  a trial that a dead worker left behind is retried (Optuna's heartbeat marks it stale and
  re-queues it) and resumes from its last checkpoint.
- Workers stop once the study holds ``trials`` completed trials; several workers may
  overshoot by at most one trial each.
- ``OUT/best_config.toml`` is the best trial's configuration, in the format ``train``
  reads.

The paper's search (§2.2.2) also samples the data preprocessing. Here it is the choice of
GM maps that Clinica's t1-volume pipeline writes (``SearchSpace.preprocessing``):
``"segmentation"``, the unmodulated probability maps in MNI space (what every other
command reads by default), or ``"dartel:GROUP"``, the modulated maps registered to the
DARTEL template of group GROUP (``--dartel-group GROUP`` elsewhere). Only the first is
searched by default, because a CAPS folder need not hold the second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import tomli_w
import torch

from neuromask.data.dataset import load_gm_maps
from neuromask.errors import ParameterError
from neuromask.io.atomic import atomic_path
from neuromask.io.claim import check_not_an_input
from neuromask.io.layout import record_path
from neuromask.models.cnn import CNNConfig
from neuromask.progress import console
from neuromask.train.config import TrainConfig, train_config_to_toml_mapping
from neuromask.train.cross_validation import run_seed
from neuromask.train.optuna_storage import create_or_load_study, optimize_one
from neuromask.train.splits_io import read_split_folder, row_indices
from neuromask.train.tensors import image_tensor, labels_of, normalize_images
from neuromask.train.trainer import train_run

STUDY_NAME = "neuromask-search"


@dataclass(frozen=True)
class SearchSpace:
    """The paper's search space. Every trial samples each dimension independently."""

    n_blocks: tuple[int, int] = (3, 7)
    first_filters: tuple[int, ...] = (4, 8, 16, 32)
    max_filters: int = 256
    sub_blocks: tuple[int, int] = (1, 3)
    downsampling: tuple[str, ...] = ("maxpool", "stride")
    fc_layers: tuple[int, int] = (1, 3)
    dropout: tuple[float, float] = (0.0, 0.5)
    learning_rate: tuple[float, float] = (1e-5, 1e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    batch_size: tuple[int, ...] = (2, 4, 8, 16)
    normalization: tuple[str, ...] = ("none", "zscore", "minmax")
    preprocessing: tuple[str, ...] = ("segmentation",)

    def __post_init__(self) -> None:
        if not self.preprocessing:
            raise ParameterError("search.preprocessing must list at least one choice")
        for choice in self.preprocessing:
            dartel_group_of(choice)


def dartel_group_of(preprocessing: str) -> str | None:
    """The DARTEL group of a preprocessing choice: None for ``"segmentation"``, GROUP for
    ``"dartel:GROUP"``."""
    if preprocessing == "segmentation":
        return None
    kind, _, group = str(preprocessing).partition(":")
    if kind != "dartel" or not group.strip():
        raise ParameterError(
            f"search.preprocessing: {preprocessing!r} is neither 'segmentation' (the "
            "unmodulated maps) nor 'dartel:GROUP' (the modulated DARTEL maps of group GROUP)"
        )
    return group.strip()


def load_search_config(path: str | os.PathLike[str] | None) -> tuple[TrainConfig, SearchSpace]:
    """Settings outside the space (a TrainConfig) and, from an optional ``[search]`` table,
    narrower ranges of the search space (the keys of :class:`SearchSpace`)."""
    from neuromask.config import from_mapping, read_toml
    from neuromask.train.config import train_config_from_mapping

    if path is None:
        return TrainConfig(), SearchSpace()
    data = read_toml(path)
    space = from_mapping(SearchSpace, data.pop("search", {}), source=str(path), prefix="search.")
    return train_config_from_mapping(data, source=str(path)), space


def sample_config(
    trial: optuna.Trial, base: TrainConfig, space: SearchSpace, input_shape: tuple[int, int, int]
) -> TrainConfig:
    """A training configuration drawn from ``space``; settings outside the space come from
    ``base`` (epochs, patience, seed, device)."""
    n_blocks = trial.suggest_int("n_blocks", *space.n_blocks)
    first = trial.suggest_categorical("first_filters", list(space.first_filters))
    sub_blocks = tuple(
        trial.suggest_int(f"sub_blocks_{b}", *space.sub_blocks) for b in range(n_blocks)
    )
    n_fc = trial.suggest_int("n_fc", *space.fc_layers)
    probe = CNNConfig(
        n_blocks=n_blocks,
        first_filters=first,
        max_filters=max(first, space.max_filters),
        sub_blocks=sub_blocks,
    )
    flat = int(np.prod(probe.feature_shape(input_shape)))
    hidden = tuple(max(8, flat // 8 ** (i + 1)) for i in range(n_fc - 1))
    model = CNNConfig(
        n_blocks=n_blocks,
        first_filters=first,
        max_filters=max(first, space.max_filters),
        sub_blocks=sub_blocks,
        downsampling=trial.suggest_categorical("downsampling", list(space.downsampling)),
        fc_layers=hidden,
        dropout=trial.suggest_float("dropout", *space.dropout),
    )
    return dataclasses.replace(
        base,
        model=model,
        model_preset="paper",
        learning_rate=trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        batch_size=trial.suggest_categorical("batch_size", list(space.batch_size)),
        normalization=trial.suggest_categorical("normalization", list(space.normalization)),
    )


def preprocessing_key(choice: str) -> str:
    """A folder-safe tag of a preprocessing choice other than the default."""
    return hashlib.sha256(choice.encode()).hexdigest()[:8]


def config_key(config: TrainConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SearchInputs:
    """The GM maps of a split's sessions for each preprocessing choice, and their
    normalised tensors, loaded once per worker."""

    caps: str | os.PathLike[str]
    sessions: Any
    cache_dir: Path
    progress: bool
    _maps: dict[str, Any] = field(default_factory=dict)
    _tensors: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def maps(self, choice: str) -> Any:
        if choice not in self._maps:
            self._maps[choice] = load_gm_maps(
                self.caps,
                self.sessions,
                dartel_group=dartel_group_of(choice),
                cache_dir=self.cache_dir,
                progress=self.progress,
            )
        return self._maps[choice]

    def tensor(self, choice: str, normalization: str) -> torch.Tensor:
        if (choice, normalization) not in self._tensors:
            images = np.asarray(self.maps(choice).images)
            self._tensors[choice, normalization] = image_tensor(
                normalize_images(images, normalization)
            )
        return self._tensors[choice, normalization]


def run_search(
    caps: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    trials: int = 20,
    base: TrainConfig | None = None,
    space: SearchSpace | None = None,
    storage: str | None = None,
    study_name: str = STUDY_NAME,
    split: int = 0,
    seed: int | None = None,
    heartbeat_s: int = 60,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Run trials until the study holds ``trials`` completed ones; return the study."""
    if trials < 1:
        raise ParameterError(f"--trials must be at least 1, got {trials}")
    base = base or TrainConfig()
    space = space or SearchSpace()
    out = Path(out)
    check_not_an_input(out, [caps, split_dir])
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'search.db').resolve()}"
    folder = read_split_folder(split_dir, [split])
    train, validation = folder.folds[split]
    inputs = SearchInputs(caps, folder.train_val, Path(cache_dir or out / "cache"), progress)
    for choice in space.preprocessing:  # a missing map stops the search before any trial
        inputs.maps(choice)
    labels = torch.from_numpy(labels_of(folder.train_val, "train_val.tsv").copy())
    train_idx = np.asarray(row_indices(folder.train_val, train))
    val_idx = np.asarray(row_indices(folder.train_val, validation))

    def objective(trial: optuna.Trial) -> float:
        choice = str(trial.suggest_categorical("preprocessing", list(space.preprocessing)))
        data = inputs.maps(choice)
        config = sample_config(trial, base, space, data.grid.shape)
        key = config_key(config) + (
            "" if choice == "segmentation" else f"-{preprocessing_key(choice)}"
        )
        trial.set_user_attr("config", train_config_to_toml_mapping(config))
        trial.set_user_attr("run_dir", str(out / "trials" / key))
        result = train_run(
            inputs.tensor(choice, config.normalization),
            labels,
            train_idx,
            val_idx,
            validation,
            config,
            out / "trials" / key,
            run_seed=run_seed(config.seed, 0),
            record={
                "split": split,
                "run": 0,
                "caps": record_path(caps, out / "trials" / key),
                "split_dir": record_path(split_dir, out / "trials" / key),
                "grid": data.grid.to_dict(),
                "dartel_group": dartel_group_of(choice),
                "search_trial": trial.number,
            },
            progress=progress,
        )
        return float(result.validation["balanced_accuracy"])

    sampler_seed = int(
        np.random.SeedSequence(
            [seed if seed is not None else time.time_ns(), os.getpid()]
        ).generate_state(1)[0]
    )
    study = _open_study(storage, study_name, heartbeat_s, sampler_seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while not _enough_trials(study, trials):
        if not optimize_one(study, objective) and progress:
            console.print(
                "[yellow]a trial was failed by another worker while it ran "
                "(heartbeat late); its copy resumes it[/yellow]"
            )
    write_best_config(study, out / "best_config.toml")
    return study


def _enough_trials(study: optuna.Study, trials: int) -> bool:
    """True once ``trials`` trials are complete, or the rest are running elsewhere."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pending = states.count(optuna.trial.TrialState.RUNNING) + states.count(
        optuna.trial.TrialState.WAITING
    )
    return complete >= trials or (
        complete + pending >= trials and optuna.trial.TrialState.WAITING not in states
    )


def _open_study(storage: str, study_name: str, heartbeat_s: int, sampler_seed: int) -> optuna.Study:
    return create_or_load_study(
        storage,
        study_name,
        heartbeat_s,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=sampler_seed),
    )


def write_best_config(study: optuna.Study, path: Path) -> Path | None:
    """The best completed trial's configuration as TOML (nothing when none completed)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    config = dict(best.user_attrs["config"])
    header = (
        f"# Best of {len(study.trials)} trials of study {study.study_name!r}: trial {best.number}, "
        f"validation balanced accuracy {best.value:.4f}\n"
    )
    group = dartel_group_of(str(best.params.get("preprocessing", "segmentation")))
    if group is not None:
        header += (
            f"# Data preprocessing: the modulated DARTEL maps of group {group}; train with "
            f"--dartel-group {group}\n"
        )
    with atomic_path(path) as tmp:
        tmp.write_text(header + tomli_w.dumps(config))
    return path
