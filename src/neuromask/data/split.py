"""Subject-level splits: a demographically matched test set, then stratified k folds.

The test set follows ClinicaDL's procedure: for each diagnosis, N subjects are drawn at
random, and the draw is repeated until their ages (Student t-test) and sexes
(chi-squared test) are not significantly different from those of the remaining subjects
of that diagnosis, with both p-values at or above a threshold (ClinicaDL uses 0.80). The
remaining subjects are split into k folds stratified by diagnosis.

Validation and test sets keep one session per subject, the baseline (earliest);
training sets keep every session of their subjects. No subject is ever in two of train,
validation and test.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.model_selection import StratifiedKFold

import neuromask
from neuromask.errors import NeuromaskWarning, ParameterError, TableError
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.layout import SPLIT_RECORD, SplitLayout
from neuromask.io.participants import DIAGNOSES, baseline_sessions, inconsistent_subjects, write_tsv


@dataclass(frozen=True)
class SplitConfig:
    """Settings of a split; the defaults are the paper's (100 test subjects per class,
    5 folds, seed 2) and ClinicaDL's p-value threshold (0.80)."""

    test_subjects_per_class: int = 100
    folds: int = 5
    seed: int = 2
    p_threshold: float = 0.80
    max_draws: int = 20000

    def __post_init__(self) -> None:
        if self.test_subjects_per_class < 1:
            raise ParameterError(
                f"test_subjects_per_class must be at least 1, got {self.test_subjects_per_class}"
            )
        if self.folds < 2:
            raise ParameterError(f"folds must be at least 2, got {self.folds}")
        if not 0 <= self.p_threshold < 1:
            raise ParameterError(f"p_threshold must be in [0, 1), got {self.p_threshold}")
        if self.max_draws < 1:
            raise ParameterError(f"max_draws must be at least 1, got {self.max_draws}")


@dataclass
class SplitResult:
    """Tables of one split; ``folds[k]`` is (train, validation) of fold k."""

    test: pd.DataFrame
    train_val: pd.DataFrame
    folds: list[tuple[pd.DataFrame, pd.DataFrame]]
    matching: dict[str, dict[str, float]] = field(default_factory=dict)
    config: SplitConfig = field(default_factory=SplitConfig)

    def summary(self) -> pd.DataFrame:
        """Counts and demographics of every set, per diagnosis."""
        sets = [("test", self.test), ("train_val", self.train_val)]
        for k, (train, validation) in enumerate(self.folds):
            sets += [(f"split-{k}/train", train), (f"split-{k}/validation", validation)]
        rows = []
        for name, table in sets:
            base = baseline_sessions(table)
            for diagnosis in DIAGNOSES:
                subjects = base[base["diagnosis"] == diagnosis]
                rows.append(
                    {
                        "set": name,
                        "diagnosis": diagnosis,
                        "n_subjects": len(subjects),
                        "n_sessions": int(
                            table["participant_id"].isin(subjects["participant_id"]).sum()
                        ),
                        "age_mean": subjects["age"].mean(),
                        "age_sd": subjects["age"].std(ddof=1),
                        "male_fraction": (subjects["sex"] == "M").mean()
                        if len(subjects)
                        else np.nan,
                    }
                )
        return pd.DataFrame(rows)


def age_sex_pvalues(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """t-test p-value of ages and chi-squared p-value of sexes between two subject tables."""
    p_age = float(stats.ttest_ind(a["age"].to_numpy(float), b["age"].to_numpy(float)).pvalue)
    table = np.array([[(t["sex"] == s).sum() for s in ("M", "F")] for t in (a, b)])
    table = table[:, table.sum(axis=0) > 0]
    p_sex = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)
    return (p_age if np.isfinite(p_age) else 1.0), p_sex


def stable_subjects(sessions: pd.DataFrame) -> pd.DataFrame:
    """The sessions of stable CN and stable AD subjects, as the paper selects them:
    subjects whose diagnosis changes across sessions are left out (with a warning);
    subjects whose sex changes are an error, since they cannot be matched."""
    conflicting = inconsistent_subjects(sessions, "sex")
    if conflicting:
        raise TableError(
            f"The sex of {', '.join(conflicting[:5])} changes across sessions; correct the "
            "participants TSV (age and sex matching needs one sex per subject)."
        )
    unstable = inconsistent_subjects(sessions, "diagnosis")
    if unstable:
        warnings.warn(
            f"Left out {len(unstable)} subject(s) whose diagnosis changes across sessions "
            f"({', '.join(unstable[:5])}{', ...' if len(unstable) > 5 else ''}): the split "
            "keeps stable CN and stable AD subjects only.",
            NeuromaskWarning,
            stacklevel=3,
        )
        sessions = sessions[~sessions["participant_id"].isin(unstable)].reset_index(drop=True)
    return sessions


def make_splits(sessions: pd.DataFrame, config: SplitConfig | None = None) -> SplitResult:
    """Split a validated participants table (columns diagnosis, age, sex needed)."""
    config = config or SplitConfig()
    sessions = stable_subjects(sessions.reset_index(drop=True))
    baseline = baseline_sessions(sessions)
    rng = np.random.default_rng(config.seed)
    n = config.test_subjects_per_class

    test_ids: list[str] = []
    matching: dict[str, dict[str, float]] = {}
    for diagnosis in DIAGNOSES:
        subjects = baseline[baseline["diagnosis"] == diagnosis].reset_index(drop=True)
        if len(subjects) <= n:
            raise ParameterError(
                f"--test-subjects-per-class: {n} {diagnosis} subjects asked for the test set, "
                f"but only {len(subjects)} {diagnosis} subjects exist; at least {n + 1} are needed "
                "so that some remain for training."
            )
        best: tuple[float, np.ndarray, float, float] | None = None
        for draw in range(1, config.max_draws + 1):  # noqa: B007 (read after the loop)
            chosen = np.zeros(len(subjects), dtype=bool)
            chosen[rng.choice(len(subjects), size=n, replace=False)] = True
            p_age, p_sex = age_sex_pvalues(subjects[chosen], subjects[~chosen])
            if best is None or min(p_age, p_sex) > best[0]:
                best = (min(p_age, p_sex), chosen, p_age, p_sex)
            if p_age >= config.p_threshold and p_sex >= config.p_threshold:
                break
        else:
            raise ParameterError(
                f"No draw of {n} {diagnosis} test subjects in {config.max_draws} matched the rest "
                f"with both p-values >= {config.p_threshold} (best: age p={best[2]:.3f}, "  # type: ignore[index]
                f"sex p={best[3]:.3f}). Lower --p-threshold or the test size."  # type: ignore[index]
            )
        test_ids += subjects.loc[chosen, "participant_id"].tolist()
        matching[diagnosis] = {"p_age": p_age, "p_sex": p_sex, "draws": float(draw)}

    test = baseline[baseline["participant_id"].isin(test_ids)].reset_index(drop=True)
    p_age, p_sex = age_sex_pvalues(test[test["diagnosis"] == "AD"], test[test["diagnosis"] == "CN"])
    matching["test_AD_vs_CN"] = {"p_age": p_age, "p_sex": p_sex}

    train_val = sessions[~sessions["participant_id"].isin(test_ids)].reset_index(drop=True)
    rest = baseline[~baseline["participant_id"].isin(test_ids)].reset_index(drop=True)
    counts = rest["diagnosis"].value_counts()
    if (counts < config.folds).any() or len(counts) < len(DIAGNOSES):
        raise ParameterError(
            f"--folds: {config.folds} folds need at least {config.folds} subjects of each "
            f"diagnosis outside the test set; there are {counts.to_dict()}."
        )
    kfold = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    folds = []
    for train_idx, val_idx in kfold.split(rest["participant_id"], rest["diagnosis"]):
        train_ids = set(rest.loc[train_idx, "participant_id"])
        train = train_val[train_val["participant_id"].isin(train_ids)].reset_index(drop=True)
        validation = rest.loc[val_idx].sort_index().reset_index(drop=True)
        folds.append((train, validation))
    return SplitResult(
        test=test, train_val=train_val, folds=folds, matching=matching, config=config
    )


def write_splits(
    result: SplitResult, out: str | os.PathLike[str], *, overwrite: bool = False, source: str = ""
) -> Path:
    """Write ``test.tsv``, ``train_val.tsv``, ``split-<k>/{train,validation}.tsv``,
    ``summary.tsv`` and ``split.json`` (settings, seed, p-values) into ``out``."""
    inputs = [source] if source else []
    with staged_output_dir(out, overwrite, marker=SPLIT_RECORD, inputs=inputs) as stage:
        layout = SplitLayout(stage)
        write_tsv(result.test, layout.test_tsv)
        write_tsv(result.train_val, layout.train_val_tsv)
        for k, (train, validation) in enumerate(result.folds):
            write_tsv(train, layout.train_tsv(k))
            write_tsv(validation, layout.validation_tsv(k))
        write_tsv(result.summary(), layout.summary_tsv)
        record = {
            "neuromask_version": neuromask.__version__,
            "source": source,
            "config": asdict(result.config),
            "matching": result.matching,
        }
        with atomic_path(layout.record) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
    return Path(out)
