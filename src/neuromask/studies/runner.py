"""The paper's experiments as studies: ``neuromask study NAME --config FILE --out OUT``.

A study folder (OUT) is a workspace shared by every study run with the same settings:
trainings, masks and evaluations are jobs keyed by what they compute, so the ``group``
study reuses the trainings of the ``cnn`` study, and a rerun reuses everything finished.
Jobs run through :mod:`neuromask.studies.engine` (Optuna, SQLite in OUT by default, or a
PostgreSQL URL for workers on several machines).

Layout: ``study.toml`` (the settings, as read), ``data/`` (synthetic cohorts, when asked),
``models/split-<k>/run-<r>/``, ``masks/split-<k>/run-<r>/<cohort>/<settings>/``,
``sessions/``, ``jobs.db``, and one folder of tables per study (``cnn/``, ``mask-grid/``,
``group/``, ``session/``, ``training/``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neuromask.config import to_mapping
from neuromask.errors import OutputExistsError, ParameterError
from neuromask.explain import MaskConfig
from neuromask.io.atomic import atomic_path
from neuromask.io.participants import read_participants, session_order, write_tsv
from neuromask.metrics.prob_cnn import mean_off_diagonal, prob_cnn_matrix, symmetric_prob_cnn
from neuromask.studies.config import STUDIES, StudyConfig
from neuromask.studies.engine import Job, Stage, run_stages


def settings_key(config: MaskConfig) -> str:
    """A short, stable name for a set of mask settings."""
    text = json.dumps(to_mapping(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Workspace:
    out: Path
    config: StudyConfig
    progress: bool = True
    device: str = "auto"
    _models: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ data
    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def caps(self) -> Path:
        if self.config.data.synthetic:
            return self.data_dir / "adni" / "synth" / "caps"
        return Path(self.config.data.caps)

    @property
    def split_dir(self) -> Path:
        if self.config.data.synthetic:
            return self.data_dir / "adni" / "split"
        return Path(self.config.data.split_dir)

    @property
    def independent(self) -> tuple[Path, Path] | None:
        d = self.config.data
        if d.synthetic:
            return (
                self.data_dir / "aibl" / "synth" / "caps",
                self.data_dir / "aibl" / "qc" / "pass.tsv",
            )
        if d.independent_caps and d.independent_tsv:
            return Path(d.independent_caps), Path(d.independent_tsv)
        return None

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    def model_dir(self, split: int, run: int) -> Path:
        return self.out / "models" / f"split-{split}" / f"run-{run}"

    def mask_dir(self, split: int, run: int, cohort: str, config: MaskConfig) -> Path:
        return self.out / "masks" / f"split-{split}" / f"run-{run}" / cohort / settings_key(config)

    # ------------------------------------------------------------------ jobs
    def data_job(self) -> Job:
        return Job("data/synthesize", {"kind": "data"})

    def resolve(self, spec: dict) -> Callable[[], object]:
        """The work of a job, rebuilt from its spec (any worker can run any job)."""
        from neuromask.config import from_mapping

        kind = spec["kind"]
        if kind == "data":
            return self._synthesize
        if kind == "train":
            return lambda: self._train(spec["split"], spec["run"])
        if kind == "evaluate":
            return lambda: self._evaluate(spec["split"], spec["run"], spec["name"])
        mask = from_mapping(MaskConfig, spec["mask"], source="job spec")
        if kind == "group_mask":
            return lambda: self._group_mask(spec["split"], spec["run"], spec["cohort"], mask)
        if kind == "sessions":
            return lambda: self._sessions(mask)
        raise ValueError(f"unknown job kind {kind!r}")

    def _synthesize(self) -> None:
        from neuromask.data.split import SplitConfig, make_splits, write_splits
        from neuromask.data.synthetic import SynthConfig, generate_cohort
        from neuromask.prepare import quality_check_folder

        done = self.data_dir / "done.json"
        if done.is_file():
            return
        d = self.config.data
        adni = generate_cohort(
            SynthConfig(
                voxel_size=d.voxel_size,
                subjects_per_class=d.subjects_per_class,
                cohort="adni",
                qc_failures=3,  # segmentation failures for the quality check to catch
                atrophy_rois=d.atrophy_rois,
                atrophy_heterogeneity=d.atrophy_heterogeneity,
                atrophy_strength=d.atrophy_strength,
                seed=d.seed,
            ),
            self.data_dir / "adni" / "synth",
            overwrite=True,
            progress=self.progress,
        )
        aibl = generate_cohort(
            SynthConfig(
                voxel_size=d.voxel_size,
                subjects_per_class=d.independent_subjects_per_class,
                sessions=(1, 2),
                cohort="aibl",
                qc_failures=2,
                atrophy_rois=tuple(adni.atrophy_rois),  # the same disease in both cohorts
                atrophy_heterogeneity=d.atrophy_heterogeneity,
                atrophy_strength=d.atrophy_strength,
                seed=d.seed + 1,
            ),
            self.data_dir / "aibl" / "synth",
            overwrite=True,
            progress=self.progress,
        )
        for name, cohort in (("adni", adni), ("aibl", aibl)):
            quality_check_folder(
                cohort.caps,
                cohort.participants,
                self.data_dir / name / "qc",
                overwrite=True,
                progress=self.progress,
            )
        split = make_splits(
            read_participants(self.data_dir / "adni" / "qc" / "pass.tsv"),
            SplitConfig(
                test_subjects_per_class=d.test_subjects_per_class,
                p_threshold=d.p_threshold,
                folds=self.config.study.folds,
                seed=d.seed + 2,
            ),
        )
        write_splits(split, self.split_dir, overwrite=True)
        with atomic_path(done) as tmp:
            tmp.write_text(json.dumps({"atrophy_rois": adni.atrophy_rois}))

    def train_job(self, split: int, run: int) -> Job:
        return Job(f"train/split-{split}/run-{run}", {"kind": "train", "split": split, "run": run})

    def _train(self, split: int, run: int) -> None:
        from neuromask.train.cross_validation import train_splits

        if (self.model_dir(split, run) / "validation_metrics.json").is_file():
            return
        train_splits(
            self.caps,
            self.split_dir,
            self.out / "models",
            self.config.train,
            splits=[split],
            runs=run + 1,
            only_runs=[run],
            cache_dir=self.cache,
            progress=self.progress,
        )

    def evaluate_job(self, split: int, run: int, name: str) -> Job:
        return Job(
            f"evaluate/split-{split}/run-{run}/{name}",
            {"kind": "evaluate", "split": split, "run": run, "name": name},
        )

    def _evaluate(self, split: int, run: int, name: str) -> None:
        from neuromask.train.evaluate import evaluate_model

        model = self.model_dir(split, run)
        if (model / name / "metrics.json").is_file():
            return
        if name == "test":
            caps, tsv = self.caps, self.split_dir / "test.tsv"
        else:
            caps, tsv = self.independent  # type: ignore[misc]
        evaluate_model(
            model,
            caps,
            tsv,
            name,
            overwrite=True,
            cache_dir=self.cache,
            device=self.device,
            progress=self.progress,
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

    def _group_mask(self, split: int, run: int, cohort: str, config: MaskConfig) -> None:
        from neuromask.mask_jobs import group_mask_job

        out = self.mask_dir(split, run, cohort, config)
        if (out / "mask.nii.gz").is_file() and not (out / "checkpoint.pt").exists():
            return
        if cohort == "adni":
            caps, tsv = self.caps, self.split_dir / f"split-{split}" / "train.tsv"
        else:
            caps, tsv = self.independent  # type: ignore[misc]
        # Early stopping watches the model's own validation set (ADNI-like) in both cases.
        group_mask_job(
            self.model_dir(split, run),
            caps,
            tsv,
            out,
            config,
            validation_tsv=self.split_dir / f"split-{split}" / "validation.tsv",
            validation_caps=self.caps,
            cache_dir=self.cache,
            device=self.device,
            progress=self.progress,
        )

    def sessions_tsv(self) -> Path:
        """AD sessions of split 0's training and validation subjects that have at least two
        sessions (``session_subjects`` of them, 0 = all), for the session study."""
        path = self.out / "sessions" / "sessions.tsv"
        table = read_participants(self.split_dir / "train_val.tsv")
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

    def session_dir(self, config: MaskConfig | None = None) -> Path:
        return self.out / "sessions" / settings_key(config or self.config.session_mask)

    def session_job(self) -> Job:
        config = self.config.session_mask
        return Job(
            f"sessions/split-0/run-0/{settings_key(config)}",
            {"kind": "sessions", "mask": to_mapping(config)},
        )

    def _sessions(self, config: MaskConfig) -> None:
        from neuromask.mask_jobs import session_mask_job

        session_mask_job(
            self.model_dir(0, 0),
            self.caps,
            self.sessions_tsv(),
            self.session_dir(config),
            config,
            cache_dir=self.cache,
            device=self.device,
            progress=self.progress,
        )

    # ------------------------------------------------------------------ helpers for tables
    def load_mask(self, path: Path) -> np.ndarray:
        from neuromask.io.nifti import load_volume

        return load_volume(path)[0]

    @functools.cached_property
    def _atlas(self):
        from neuromask.io.atlas import load_aal2
        from neuromask.io.nifti import read_grid

        first = next((self.out / "masks").rglob("mask.nii.gz"), None)
        if first is None:
            first = next(self.session_dir().glob("*_mask.nii.gz"))
        return load_aal2(read_grid(first))

    def atlas(self):
        """AAL2 on the masks' grid (resampled once per workspace)."""
        return self._atlas

    def model_and_images(self, split: int, run: int):
        """A trained model and its validation AD images, loaded once per workspace."""
        key = (split, run)
        if key not in self._models:
            from neuromask.compare import model_validation_images

            self._models[key] = model_validation_images(
                self.model_dir(split, run), self.device, self.cache, False
            )
        return self._models[key]


# ---------------------------------------------------------------------- the studies
@dataclass
class StudyPlan:
    stages: list[Stage]
    tables: Callable[[Workspace], dict[str, pd.DataFrame]]


def _stages(ws: Workspace, *groups: list[Job]) -> list[Stage]:
    names = ["data", "train", "evaluate", "masks"]
    stages = []
    if ws.config.data.synthetic:
        stages.append(Stage("data", [ws.data_job()]))
    for name, jobs in zip(names[1:], groups, strict=False):
        if jobs:
            stages.append(Stage(name, jobs))
    return stages


def plan(ws: Workspace, name: str) -> StudyPlan:
    c = ws.config
    folds, runs = range(c.study.folds), range(c.study.runs)
    if name == "cnn":
        names = ["test"] + (["independent"] if ws.independent else [])
        return StudyPlan(
            _stages(
                ws,
                [ws.train_job(f, r) for f in folds for r in runs],
                [ws.evaluate_job(f, r, n) for f in folds for r in runs for n in names],
            ),
            _cnn_tables,
        )
    if name == "mask-grid":
        settings = c.mask_grid.settings(c.mask)
        unique = {settings_key(m): m for _, _, m in settings}
        return StudyPlan(
            _stages(
                ws,
                [ws.train_job(0, 0)],
                [],
                [ws.group_mask_job(0, 0, "adni", m) for m in unique.values()],
            ),
            _grid_tables,
        )
    if name == "group":
        masks = [ws.group_mask_job(f, 0, "adni", c.mask) for f in folds]
        if ws.independent:
            masks += [ws.group_mask_job(f, 0, "aibl", c.independent_mask) for f in folds]
        return StudyPlan(_stages(ws, [ws.train_job(f, 0) for f in folds], [], masks), _group_tables)
    if name == "session":
        return StudyPlan(_stages(ws, [ws.train_job(0, 0)], [], [ws.session_job()]), _session_tables)
    if name == "training":
        pairs = sorted({(f, 0) for f in folds} | {(0, r) for r in runs})
        return StudyPlan(
            _stages(
                ws,
                [ws.train_job(f, r) for f, r in pairs],
                [],
                [ws.group_mask_job(f, r, "adni", c.mask) for f, r in pairs],
            ),
            _training_tables,
        )
    raise ParameterError(f"Unknown study {name!r}; valid: {', '.join(STUDIES)}, all")


# ---------------------------------------------------------------------- tables
def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _cnn_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    rows = []
    for f, r in itertools.product(range(ws.config.study.folds), range(ws.config.study.runs)):
        model = ws.model_dir(f, r)
        row = {
            "split": f,
            "run": r,
            "validation": _json(model / "validation_metrics.json")["metrics"]["balanced_accuracy"],
            "test": _json(model / "test" / "metrics.json")["balanced_accuracy"],
        }
        if ws.independent:
            row["independent"] = _json(model / "independent" / "metrics.json")["balanced_accuracy"]
        rows.append(row)
    runs = pd.DataFrame(rows)
    per_fold = runs.drop(columns="run").groupby("split", as_index=False).mean()
    metrics = [c for c in per_fold.columns if c != "split"]
    mean = {"split": "mean", **{m: per_fold[m].mean() for m in metrics}}
    sd = {
        "split": "sd",
        **{m: per_fold[m].std(ddof=1) if len(per_fold) > 1 else 0.0 for m in metrics},
    }
    per_fold = pd.concat(
        [per_fold.astype({"split": object}), pd.DataFrame([mean, sd])], ignore_index=True
    )
    return {"balanced_accuracy_runs": runs, "balanced_accuracy": per_fold}


def _mask_summary(ws: Workspace, out: Path, atlas, k: int = 5) -> dict:
    from neuromask.metrics.roi import top_rois

    mask = ws.load_mask(out / "mask.nii.gz")
    history = pd.read_csv(out / "history.tsv", sep="\t")
    best = (
        history.loc[history["validation_total"].idxmin()]
        if "validation_total" in history
        else history.iloc[-1]
    )
    top = top_rois(mask, atlas, k)
    return {
        "mask": mask,
        "top": ", ".join(
            f"{n} ({d:.2f})" for n, d in zip(top["roi_name"], top["density"], strict=True)
        ),
        "p_ad_masked": float(best.get("validation_probability", np.nan)),
        "deleted_fraction": float((mask < 1).mean()),
        "epochs": len(history),
    }


def _figure(ws: Workspace, rows: list, study: str, name: str, title: str) -> None:
    """Masks side by side, as a PNG in the study's folder."""
    from neuromask.io.nifti import read_grid
    from neuromask.report.mask_figure import plot_mask_rows

    first = next((ws.out / "masks").rglob("mask.nii.gz"))
    (ws.out / study).mkdir(parents=True, exist_ok=True)
    plot_mask_rows(rows, read_grid(first), ws.out / study / name, title=title)


def _grid_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    from neuromask.metrics.similarity import cosine_matrix, roi_vectors

    atlas = ws.atlas()
    settings = ws.config.mask_grid.settings(ws.config.mask)
    rows, tables = [], {}
    masks: dict[tuple[str, float], np.ndarray] = {}
    for param, value, config in settings:
        s = _mask_summary(ws, ws.mask_dir(0, 0, "adni", config), atlas)
        masks[(param, value)] = s.pop("mask")
        rows.append(
            {
                "parameter": param,
                "value": value,
                **s,
                "mask_file": str(ws.mask_dir(0, 0, "adni", config) / "mask.nii.gz"),
            }
        )
    for param in ("beta1", "beta2", "lambda1", "lambda2"):
        values = [v for p, v in masks if p == param]
        if len(values) < 2:
            continue
        _figure(
            ws,
            [(f"{param} = {v:g}", masks[(param, v)]) for v in values],
            "mask-grid",
            f"masks_{param}.png",
            f"Group masks across {param} (1 - m)",
        )
        sim = cosine_matrix(roi_vectors([masks[(param, v)] for v in values], atlas))
        table = pd.DataFrame(sim, columns=[f"{v:g}" for v in values])
        table.insert(0, param, [f"{v:g}" for v in values])
        tables[f"similarity_{param}"] = table
    tables["masks"] = pd.DataFrame(rows)
    return tables


def _compare_models(
    ws: Workspace, pairs: list[tuple[int, int]], masks: list[np.ndarray], labels: list[str]
):
    from neuromask.metrics.similarity import cosine_matrix, roi_vectors

    atlas = ws.atlas()
    sim = cosine_matrix(roi_vectors(masks, atlas))
    loaded = [ws.model_and_images(f, r) for f, r in pairs]
    prob = symmetric_prob_cnn(
        prob_cnn_matrix([m for m, _ in loaded], [x for _, x in loaded], masks, mu=ws.config.mask.mu)
    )

    def square(matrix):
        t = pd.DataFrame(matrix, columns=labels)
        t.insert(0, "mask", labels)
        return t

    return sim, prob, square(sim), square(prob)


def _group_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    atlas = ws.atlas()
    folds = range(ws.config.study.folds)
    cohorts = [("adni", ws.config.mask)] + (
        [("aibl", ws.config.independent_mask)] if ws.independent else []
    )
    rows, masks = [], {}
    for f in folds:
        for cohort, config in cohorts:
            folder = ws.mask_dir(f, 0, cohort, config)
            s = _mask_summary(ws, folder, atlas)
            masks[(f, cohort)] = s.pop("mask")
            rows.append(
                {"split": f, "cohort": cohort, **s, "mask_file": str(folder / "mask.nii.gz")}
            )
    tables = {"top_rois": pd.DataFrame(rows)}
    _figure(
        ws,
        [(f"split {f}, {cohort}", masks[(f, cohort)]) for f in folds for cohort, _ in cohorts],
        "group",
        "masks_folds_cohorts.png",
        "Group masks: folds x cohorts (1 - m)",
    )
    adni = [masks[(f, "adni")] for f in folds]
    _, _, sim, prob = _compare_models(
        ws, [(f, 0) for f in folds], adni, [f"split-{f}" for f in folds]
    )
    tables["adni_folds_roi_similarity"], tables["adni_folds_prob_cnn"] = sim, prob
    if ws.independent:
        from neuromask.metrics.similarity import cosine_matrix, roi_vectors

        rows = []
        for f in folds:
            model, images = ws.model_and_images(f, 0)
            pair = [masks[(f, "adni")], masks[(f, "aibl")]]
            d = prob_cnn_matrix([model, model], [images, images], pair, mu=ws.config.mask.mu)
            rows.append(
                {
                    "split": f,
                    "roi_similarity": float(cosine_matrix(roi_vectors(pair, atlas))[0, 1]),
                    "prob_cnn": float((d[0, 1] + d[1, 0]) / 2),
                    "model_on_adni_mask": float(d[1, 0]),
                    "model_on_aibl_mask": float(d[0, 1]),
                }
            )
        table = pd.DataFrame(rows)
        mean = {"split": "mean", **{c: table[c].mean() for c in table.columns if c != "split"}}
        tables["cohorts"] = pd.concat(
            [table.astype({"split": object}), pd.DataFrame([mean])], ignore_index=True
        )
    return tables


def _training_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    c = ws.config
    groups = {
        "folds (run 0)": [(f, 0) for f in range(c.study.folds)],
        "runs (split 0)": [(0, r) for r in range(c.study.runs)],
    }
    rows, tables = [], {}
    for label, pairs in groups.items():
        if len(pairs) < 2:
            continue
        masks = [ws.load_mask(ws.mask_dir(f, r, "adni", c.mask) / "mask.nii.gz") for f, r in pairs]
        names = [f"split-{f}/run-{r}" for f, r in pairs]
        _figure(
            ws,
            list(zip(names, masks, strict=True)),
            "training",
            f"masks_{label.split()[0]}.png",
            f"Group masks of different {label} (1 - m)",
        )
        sim, prob, sim_t, prob_t = _compare_models(ws, pairs, masks, names)
        key = label.split()[0]
        tables[f"{key}_roi_similarity"], tables[f"{key}_prob_cnn"] = sim_t, prob_t
        rows.append(
            {
                "between": label,
                "masks": len(pairs),
                "mean_roi_similarity": mean_off_diagonal(sim),
                "mean_prob_cnn": mean_off_diagonal(prob),
            }
        )
    tables["summary"] = pd.DataFrame(rows)
    return tables


def session_similarity(
    index: pd.DataFrame, vectors: np.ndarray, prob: np.ndarray | None = None
) -> pd.DataFrame:
    """Intra-subject (longitudinal) and inter-subject (cross-sectional) similarity.

    Intra: for each subject with two or more masked sessions, the mean over pairs of its
    sessions; then the mean over subjects. Inter: the mean over all pairs of different
    subjects' baseline (earliest) sessions. ``vectors``: ROI densities per row of
    ``index``; ``prob``: the symmetric prob_CNN matrix, same order.
    """
    from neuromask.metrics.similarity import cosine_matrix

    metrics = {"roi_similarity": cosine_matrix(vectors)}
    if prob is not None:
        metrics["prob_cnn"] = prob
    subjects = index.groupby("participant_id").indices
    baseline = [
        min(rows, key=lambda i: session_order(index["session_id"].iloc[i]))
        for rows in subjects.values()
    ]
    out = []
    for name, matrix in metrics.items():
        per_subject = [
            np.mean([matrix[a, b] for a, b in itertools.combinations(rows, 2)])
            for rows in subjects.values()
            if len(rows) >= 2
        ]
        inter = [matrix[a, b] for a, b in itertools.combinations(baseline, 2)]
        out.append(
            {
                "metric": name,
                "intra_subject": float(np.mean(per_subject)) if per_subject else float("nan"),
                "inter_subject": float(np.mean(inter)) if inter else float("nan"),
                "subjects_intra": len(per_subject),
                "pairs_inter": len(inter),
            }
        )
    return pd.DataFrame(out)


def _session_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    import torch

    from neuromask.explain import MeaningfulPerturbation
    from neuromask.mask_jobs import load_ad_sessions
    from neuromask.metrics.similarity import roi_vectors
    from neuromask.train.evaluate import load_trained_model

    folder = ws.session_dir()
    index = pd.read_csv(folder / "index.tsv", sep="\t")
    masks = [ws.load_mask(folder / f) for f in index["mask_file"]]
    vectors = roi_vectors(masks, ws.atlas())
    model, record = load_trained_model(ws.model_dir(0, 0))
    explainer = MeaningfulPerturbation(model, ws.config.session_mask)
    inputs = load_ad_sessions(
        model, record, ws.caps, ws.sessions_tsv(), explainer, cache_dir=ws.cache, progress=False
    )
    keys = list(zip(inputs.sessions["participant_id"], inputs.sessions["session_id"], strict=True))
    position = {k: i for i, k in enumerate(keys)}
    rows = [position[k] for k in zip(index["participant_id"], index["session_id"], strict=True)]
    images = inputs.images[rows]
    # directed[i, j]: P(AD) of session i's image masked with session j's mask.
    directed = np.stack(
        [explainer.probabilities(images, 1, torch.as_tensor(m)[None, None]) for m in masks],
        axis=1,
    )
    table = session_similarity(index, vectors, symmetric_prob_cnn(directed))
    return {"similarity": table, "masks": index}


# ---------------------------------------------------------------------- entry point
def _claim(out: Path, config: StudyConfig, text: str) -> None:
    """OUT holds one set of settings; a rerun with the same settings resumes."""
    path = out / "study.toml"
    wanted = config.to_toml_mapping()
    if path.is_file():
        from neuromask.studies.config import study_config_from_mapping

        current = study_config_from_mapping(tomllib.loads(path.read_text()), str(path))
        if current.to_toml_mapping() != wanted:
            raise OutputExistsError(
                f"{out} holds a study with other settings ({path}); use another folder."
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def run_study(
    name: str,
    config: StudyConfig,
    out: str | os.PathLike[str],
    *,
    config_text: str = "",
    storage: str | None = None,
    heartbeat_s: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Run study ``name`` (or ``all``) into ``out``; return its tables (written as TSV in
    ``out/<study>/``)."""
    out = Path(out)
    names = list(STUDIES) if name == "all" else [name]
    for n in names:
        if n not in STUDIES:
            raise ParameterError(f"Unknown study {n!r}; valid: {', '.join(STUDIES)}, all")
    if not config_text:
        import tomli_w

        config_text = tomli_w.dumps(config.to_toml_mapping())
    _claim(out, config, config_text)
    ws = Workspace(out, config, progress=progress, device=device)
    storage = storage or f"sqlite:///{(out / 'jobs.db').resolve()}"
    heartbeat = heartbeat_s or config.study.heartbeat_s
    results = {}
    for n in names:
        study_plan = plan(ws, n)
        run_stages(
            study_plan.stages,
            storage,
            "neuromask",
            ws.resolve,
            heartbeat_s=heartbeat,
            progress=progress,
        )
        tables = study_plan.tables(ws)
        folder = out / n
        folder.mkdir(exist_ok=True)
        for table_name, table in tables.items():
            write_tsv(table, folder / f"{table_name}.tsv")
        results[n] = tables
    return results
