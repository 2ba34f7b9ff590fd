"""The tables (and figures) of each study, made from the finished jobs' outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuromask.io.atlas import Atlas
from neuromask.metrics.prob_cnn import mean_off_diagonal, prob_cnn_matrix, symmetric_prob_cnn
from neuromask.metrics.sessions import session_similarity
from neuromask.studies.workspace import Workspace


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def cnn_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
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
    result = json.loads((out / "result.json").read_text())
    keep_above = result["mask"]["keep_above"]
    top = top_rois(mask, atlas, k)
    return {
        "mask": mask,
        "top": ", ".join(
            f"{n} ({d:.2f})" for n, d in zip(top["roi_name"], top["density"], strict=True)
        ),
        # the written mask's own P(AD) on the validation sessions (NaN without them),
        # whatever its stages (areas tried, the fine stage)
        "p_ad_masked": float(result.get("validation_mean_p_ad_masked", np.nan)),
        # below keep_above: a fine stage's trace of the coarse mask (0.99 to 1) is kept
        "deleted_fraction": float((mask < keep_above).mean()),
        "epochs": len(history),
    }


def _figure(ws: Workspace, rows: list, study: str, name: str, title: str) -> None:
    """Masks side by side, as a PNG in the study's folder."""
    from neuromask.figures.masks import plot_mask_rows
    from neuromask.io.nifti import read_grid

    first = next(ws.layout.masks.rglob("mask.nii.gz"))
    folder = ws.layout.tables(study)
    folder.mkdir(parents=True, exist_ok=True)
    plot_mask_rows(rows, read_grid(first), folder / name, title=title)


def grid_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
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
    fills = [ws.fill(f, r, ws.config.mask) for f, r in pairs]
    prob = symmetric_prob_cnn(
        prob_cnn_matrix([m for m, _ in loaded], [x for _, x in loaded], masks, mu=fills)
    )

    def square(matrix):
        t = pd.DataFrame(matrix, columns=labels)
        t.insert(0, "mask", labels)
        return t

    return sim, prob, square(sim), square(prob)


def group_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
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
            # As the paper (§3.2.1): each cohort's images under the other cohort's mask.
            model, images = ws.model_and_images(f, 0)
            pair = [masks[(f, "adni")], masks[(f, "aibl")]]
            fill = ws.fill(f, 0, ws.config.mask)
            d = prob_cnn_matrix(
                [model, model], [images, ws.independent_images(f, 0)], pair, mu=fill
            )
            rows.append(
                {
                    "split": f,
                    "roi_similarity": float(cosine_matrix(roi_vectors(pair, atlas))[0, 1]),
                    "prob_cnn": float((d[0, 1] + d[1, 0]) / 2),
                    "adni_images_aibl_mask": float(d[0, 1]),
                    "aibl_images_adni_mask": float(d[1, 0]),
                }
            )
        table = pd.DataFrame(rows)
        mean = {"split": "mean", **{c: table[c].mean() for c in table.columns if c != "split"}}
        tables["cohorts"] = pd.concat(
            [table.astype({"split": object}), pd.DataFrame([mean])], ignore_index=True
        )
    return tables


def training_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
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


def session_tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    import torch

    from neuromask.jobs.trained_model import TrainedModel
    from neuromask.metrics.similarity import roi_vectors
    from neuromask.models.inference import class_probabilities

    folder = ws.session_dir()
    index = pd.read_csv(folder / "index.tsv", sep="\t")
    masks = [ws.load_mask(folder / f) for f in index["mask_file"]]
    vectors = roi_vectors(masks, ws.atlas())
    trained = TrainedModel.open(ws.model_dir(0, 0), "cpu")
    inputs = trained.ad_sessions(ws.caps, ws.sessions_tsv(), cache_dir=ws.cache, progress=False)
    keys = list(zip(inputs.sessions["participant_id"], inputs.sessions["session_id"], strict=True))
    position = {k: i for i, k in enumerate(keys)}
    rows = [position[k] for k in zip(index["participant_id"], index["session_id"], strict=True)]
    images = inputs.images[rows]
    # directed[i, j]: P(AD) of session i's image masked with session j's mask.
    mu = ws.fill(0, 0, ws.config.session_mask)
    directed = np.stack(
        [
            class_probabilities(
                trained.model, images, torch.as_tensor(m)[None, None], target=1, mu=mu
            )
            for m in masks
        ],
        axis=1,
    )
    table = session_similarity(index, vectors, symmetric_prob_cnn(directed))
    return {"similarity": table, "masks": index}


def localise_group_masks(
    top_rois: pd.DataFrame, truth_rois: list[str], k: int = 5
) -> list[dict[str, Any]]:
    """Each group mask of a ``group/top_rois.tsv`` table (its ``mask_file`` column): its
    split and cohort, its ``k`` densest AAL2 ROIs with their densities, and (with
    ``truth_rois``) ``neuromask localize``'s scores against them."""
    from neuromask.io.atlas import default_atlas
    from neuromask.io.nifti import load_volume
    from neuromask.metrics.localization import localization_scores
    from neuromask.metrics.roi import roi_densities

    out: list[dict[str, Any]] = []
    atlas: Atlas | None = None
    for row in top_rois.itertuples(index=False):
        mask, grid = load_volume(row.mask_file)
        if atlas is None or not atlas.grid.matches(grid):
            atlas = default_atlas(grid)
        densities = roi_densities(mask, atlas).dropna().sort_values(ascending=False, kind="stable")
        scores = localization_scores(mask, atlas, truth_rois, k=k) if truth_rois else None
        out.append(
            {
                "split": int(row.split),
                "cohort": str(row.cohort),
                "densest": [(str(n), float(d)) for n, d in densities.head(k).items()],
                "scores": scores,
            }
        )
    return out
