"""Trust the explanation: neuromask's masks and the usual attribution methods, side by side,
on the same CNN and the same images.

For a trained model (a run folder), ``run_sanity`` explains the correctly classified AD
sessions of its validation set with every method and measures:

- localisation against a synthetic cohort's ground truth (``neuromask localize``'s scores);
- the sanity checks of Adebayo et al. (2018): the same explanation from copies of the CNN
  whose layers are re-initialised in a cascade from the top (classifier) down, and from a
  CNN trained on shuffled labels. The trained CNN's map is compared with each by the
  cosine similarity of their AAL2 ROI vectors and by the Spearman rank correlation of the
  ROI values. A method passes when its randomised maps are less similar to the trained
  CNN's map than two subjects' maps are to each other (the method's inter-subject
  similarity, from per-image maps of the trained CNN);
- wall time and peak memory of each method on the trained CNN.

Every explanation is a non-negative relevance map: 1 - m for a mask, |a| for an
attribution. The group map of a baseline is the mean of its per-image maps; neuromask's
is one group mask trained on the images. The inter-subject similarity of neuromask's masks
comes from session masks.

Each (model, method) map is written to ``OUT/maps`` as soon as it is done, so a rerun
resumes where an interrupted one stopped; the shuffled-label CNN resumes from its
training checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import neuromask
from neuromask.config import to_mapping
from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, mask_preset
from neuromask.explain.baselines import measure, require_captum
from neuromask.explain.randomisation import (  # noqa: F401  (old import path)
    cascade_layers,
    randomised_copy,
)
from neuromask.figures.sanity import plot_cascade, plot_maps
from neuromask.io.atlas import Atlas, default_atlas
from neuromask.io.atomic import atomic_path
from neuromask.io.claim import claim_job_dir
from neuromask.io.grid import Grid
from neuromask.io.layout import record_path
from neuromask.io.participants import write_tsv
from neuromask.jobs.sanity_maps import (  # noqa: F401  (old import paths)
    ALL_METHODS,
    MASK,
    Explanation,
    MapStore,
    SanityConfig,
    SanityResult,
    relevance_maps,
    session_relevance,
)
from neuromask.jobs.sanity_tables import ModelSpec, cascade_table, explainer_table
from neuromask.jobs.trained_model import MaskInputs, TrainedModel, brain_mask_of
from neuromask.metrics.localization import GroundTruth, read_ground_truth
from neuromask.metrics.similarity import (  # noqa: F401  (old import path)
    cosine,
    inter_subject_similarity,
    roi_vector,
    spearman,
)
from neuromask.progress import console
from neuromask.train.shuffled_labels import shuffled_label_model


@dataclass
class _Context:
    """What every step of a sanity job shares."""

    model_dir: Path
    out: Path
    config: SanityConfig
    model: torch.nn.Module
    images: torch.Tensor
    grid: Grid
    atlas: Atlas
    brain: np.ndarray
    device: str
    cache_dir: str | os.PathLike[str] | None
    progress: bool
    healthy: np.ndarray | None = None  # CN training sessions, for the healthy reference

    @property
    def torch_device(self) -> torch.device:
        return next(self.model.parameters()).device

    def cnn(self, label: str, n_layers: int) -> torch.nn.Module:
        """The trained CNN randomised in its top ``n_layers``, or the shuffled-label CNN."""
        if label == "shuffled":
            twin, _ = shuffled_label_model(
                self.model_dir,
                self.out / "shuffled_cnn",
                epochs=self.config.shuffled_epochs,
                seed=self.config.seed,
                device=self.device,
                cache_dir=self.cache_dir,
                progress=self.progress,
            )
            return twin.to(self.torch_device).eval()
        return randomised_copy(self.model, n_layers, self.config.seed).to(self.torch_device)


def _explain(ctx: _Context, label: str, method: str, net: torch.nn.Module) -> Explanation:
    """One method on one CNN: the group map, its cost and (trained CNN) per-image ROIs."""
    dev = ctx.torch_device

    def maps() -> tuple[np.ndarray, np.ndarray | None]:
        return relevance_maps(
            method,
            net,
            ctx.images,
            config=ctx.config,
            atlas=ctx.atlas,
            brain=ctx.brain,
            device=dev,
            healthy=ctx.healthy,
        )

    (group, per_image), cost = measure(maps)
    rois = None
    if label == "trained":
        if method == MASK:
            per_image = session_relevance(
                net, ctx.images, config=ctx.config, brain=ctx.brain, device=dev
            )
        assert per_image is not None  # every method gives per-image maps but the mask
        rois = np.stack([roi_vector(p, ctx.atlas) for p in per_image])
    return Explanation(group, cost, rois)


def _explain_all(
    ctx: _Context, models: list[ModelSpec], store: MapStore
) -> dict[tuple[str, str], Explanation]:
    """Every method on every CNN, each map stored as soon as it is done (a rerun skips it)."""
    methods = ctx.config.methods
    explained: dict[tuple[str, str], Explanation] = {}
    total, done = len(models) * len(methods), 0
    for label, _, n_layers in models:
        stored = {m: store.get(label, m) for m in methods}
        net = ctx.cnn(label, n_layers) if None in stored.values() else None
        for method in methods:
            done += 1
            found = stored[method]
            if found is None:
                if ctx.progress:
                    console.print(f"[bold]sanity[/bold] {done}/{total}: {method} on {label} CNN")
                assert net is not None
                store.put(label, method, _explain(ctx, label, method, net))
                # scored as written (float32), as a resumed run reads it
                found = store.get(label, method)
                assert found is not None
            explained[label, method] = found
    return explained


def _shuffled_fit(out: Path) -> dict[str, Any] | None:
    """How well the shuffled-label CNN fits its labels (None when it was not trained)."""
    folder = out / "shuffled_cnn"
    if not (folder / "validation_metrics.json").is_file():
        return None
    fit = json.loads((folder / "validation_metrics.json").read_text())
    record = json.loads((folder / "config.json").read_text())
    return {
        "balanced_accuracy_on_its_shuffled_labels": fit["metrics"]["balanced_accuracy"],
        "fraction_of_labels_changed": record["fraction_changed"],
        "epochs_run": fit.get("epochs_run"),
    }


def _figures(
    ctx: _Context,
    explained: dict[tuple[str, str], Explanation],
    cascade: pd.DataFrame,
    table: pd.DataFrame,
    n_layers: int,
) -> None:
    plot_cascade(cascade, table, ctx.out / "sanity.png")
    shown = ["trained", "cascade-1", f"cascade-{max(1, n_layers // 2)}", f"cascade-{n_layers}"]
    if ctx.config.shuffled:
        shown.append("shuffled")
    shown = list(dict.fromkeys(shown))
    methods = list(ctx.config.methods)
    maps = {(lab, m): explained[lab, m].group for lab in shown for m in methods}
    plot_maps(maps, shown, methods, ctx.grid, ctx.out / "maps.png")


def _faithfulness(
    ctx: _Context, explained: dict[tuple[str, str], Explanation]
) -> dict[str, dict[str, float]]:
    """Deletion, insertion and ROAD areas of each method's map on the trained CNN, with
    mu = 1 as the reference and, when the CN training sessions are loaded, also with
    each image's healthy version max(X, H) (``healthy_deletion_auc``,
    ``healthy_insertion_auc``; image i with CN session i mod K) and ROAD on the residual
    from H (``healthy_road_auc``)."""
    from neuromask.jobs.faithfulness import faithfulness_areas, healthy_versions, paired_sessions

    start = anatomy = None
    if ctx.healthy is not None:
        start = healthy_versions(ctx.healthy, ctx.images)
        anatomy = paired_sessions(ctx.healthy, len(ctx.images))
    return {
        method: faithfulness_areas(
            ctx.model,
            ctx.images,
            explained["trained", method].group,
            ctx.brain,
            mu=mask_preset("group").mu,
            healthy_start=start,
            healthy_anatomy=anatomy,
            seed=ctx.config.seed,
        )
        for method in ctx.config.methods
    }


def _truth_settings(ground_truth: GroundTruth | None) -> dict[str, Any]:
    """What settings.json says of the ground truth the maps were scored against."""
    if ground_truth is None:
        return {"truth_rois": None, "truth_voxels": None}
    voxels = ground_truth.voxels
    return {
        "truth_rois": ground_truth.rois,
        "truth_voxels": None if voxels is None else int(voxels.sum()),
    }


def _run_settings(
    ctx: _Context,
    n: int,
    layers: list[str],
    group_mask: MaskConfig,
    ground_truth: GroundTruth | None,
) -> dict[str, Any]:
    """What settings.json adds to the job's marker: the settings in full (the marker
    leaves ``baseline_reference = "mu"`` out), the device, the images and the CNNs."""
    config = ctx.config
    return {
        "sanity": to_mapping(config),
        "device": str(ctx.torch_device),
        "n_images": n,
        "cascade_layers": layers,
        "group_mask": to_mapping(group_mask) if MASK in config.methods else None,
        **_truth_settings(ground_truth),
        "shuffled_cnn": _shuffled_fit(ctx.out) if config.shuffled else None,
        "torch_version": torch.__version__,
    }


def _job_settings(config: SanityConfig) -> dict[str, Any]:
    """The settings that mark a sanity folder: ``baseline_reference`` only when it is not
    "mu", the value every job ran before it existed, so that those folders still resume."""
    settings = to_mapping(config)
    if settings.get("baseline_reference") == "mu":
        del settings["baseline_reference"]
    return settings


def healthy_sessions(
    trained: TrainedModel, config: SanityConfig, cache_dir: str | os.PathLike[str] | None
) -> np.ndarray | None:
    """The CN training sessions that the default group mask restores deleted voxels
    from, and the baselines too under ``baseline_reference = "healthy"`` (every CNN of
    the cascade is explained with the trained CNN's), or None when nothing uses them."""
    mask_uses = MASK in config.methods and mask_preset("group").reference == "healthy"
    if not (mask_uses or config.needs_healthy_baselines):
        return None
    return trained.training_cn_sessions(config.seed, cache_dir=cache_dir)


def _images_to_explain(
    trained: TrainedModel,
    config: SanityConfig,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
) -> tuple[MaskInputs, int]:
    """The model's correctly classified validation AD sessions, and how many to explain."""
    inputs, split_tsv = trained.validation_ad_sessions(cache_dir=cache_dir, progress=progress)
    n = min(config.images, len(inputs.images))
    if n < 2:
        raise ParameterError(
            f"{split_tsv}: only {n} AD session is classified correctly; the sanity checks "
            "need at least 2"
        )
    return inputs, n


def _open_model(model_dir: Path, device: str, config: SanityConfig) -> TrainedModel:
    trained = TrainedModel.open(model_dir, device)
    if config.shuffled and trained.is_maps:
        raise ParameterError(
            f"{model_dir} is a ClinicaDL model: the shuffled-label test retrains a CNN with "
            "neuromask's trainer, which builds neuromask's architectures only; run without "
            "--shuffled."
        )
    return trained


def _cnns(layers: list[str], shuffled: bool) -> list[ModelSpec]:
    """The trained CNN, its copies randomised from the top down, the shuffled-label CNN."""
    models: list[ModelSpec] = [("trained", "none", 0)]
    models += [(f"cascade-{i}", layers[i - 1], i) for i in range(1, len(layers) + 1)]
    if shuffled:
        models.append(("shuffled", "all (trained on shuffled labels)", -1))
    return models


def run_sanity(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str] | None = None,
    config: SanityConfig | None = None,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SanityResult:
    """Explain a trained model's validation AD images with every method, check the
    explanations against randomised CNNs, score them against ground truth (``truth``:
    a synthetic cohort's ``ground_truth`` folder) and write the tables and figures.

    Writes ``explainers.tsv`` (one row per method), ``cascade.tsv`` (similarity at each
    cascade step), ``sessions.tsv`` (the images explained), ``settings.json``,
    ``sanity.png`` and ``maps.png``.
    """
    config = config or SanityConfig()
    group_mask = config.group_mask_config()  # a bad mask setting is named before any work
    if any(m != MASK for m in config.methods):
        require_captum()  # the baselines' extra: say it is missing before any work is done
    model_dir, out = Path(model_dir), Path(out)
    job = {
        "model_dir": record_path(model_dir, out),
        "truth": record_path(truth, out) if truth else None,
        "sanity": _job_settings(config),
        "neuromask_version": neuromask.__version__,
    }
    claim = functools.partial(
        claim_job_dir, out, job, overwrite, "sanity_job.json", inputs=[model_dir, truth]
    )
    claim(dry_run=True)  # a refusal comes before any work
    trained = _open_model(model_dir, device, config)
    inputs, n = _images_to_explain(trained, config, cache_dir, progress)
    grid = inputs.data.grid
    ground_truth = read_ground_truth(truth, grid) if truth is not None else None
    # Claimed once the inputs are read: a job that cannot start leaves nothing behind.
    claim()
    ctx = _Context(
        model_dir,
        out,
        config,
        trained.model,
        inputs.images[:n].cpu(),
        grid,
        default_atlas(grid),
        brain_mask_of(inputs.data.images),
        device,
        cache_dir,
        progress,
        healthy_sessions(trained, config, cache_dir),
    )
    sessions = inputs.sessions.iloc[:n].assign(p_ad=inputs.p_ad[:n])
    write_tsv(sessions, out / "sessions.tsv")
    layers = cascade_layers(trained.model)
    models = _cnns([name for name, _ in layers], config.shuffled)
    explained = _explain_all(ctx, models, MapStore(out / "maps", grid))
    cascade = cascade_table(models, config.methods, explained, ctx.atlas)
    full = f"cascade-{len(layers)}"
    table = explainer_table(
        cascade, explained, full, config, ctx.atlas, ground_truth, _faithfulness(ctx, explained)
    )
    write_tsv(table, out / "explainers.tsv")
    write_tsv(cascade, out / "cascade.tsv")
    settings = {
        **job,
        **_run_settings(ctx, n, [name for name, _ in layers], group_mask, ground_truth),
    }
    with atomic_path(out / "settings.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=2))
    _figures(ctx, explained, cascade, table, len(layers))
    return SanityResult(out, table, cascade, sessions, settings)
