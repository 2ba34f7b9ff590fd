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

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

import neuromask
from neuromask.config import to_mapping
from neuromask.errors import ParameterError
from neuromask.explain.baselines import METHODS, Cost, attribute, measure, require_captum
from neuromask.io.atlas import Atlas, load_aal2
from neuromask.io.atomic import atomic_path, claim_job_dir
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, read_grid, save_volume
from neuromask.io.participants import write_tsv
from neuromask.metrics.localization import localization_scores, read_truth_rois
from neuromask.metrics.roi import roi_means
from neuromask.metrics.similarity import cosine_matrix
from neuromask.progress import console

MASK = "mask"
ALL_METHODS = (MASK, *METHODS)
AD = 1


@dataclass
class SanityConfig:
    """Settings of ``neuromask sanity``.

    ``images``: how many correctly classified validation AD sessions are explained (the
    first ones, in table order). ``mask_epochs`` and ``mask_batch_size``: the group mask
    (preset ``group`` otherwise; with no validation set, early stopping follows the
    training loss). ``session_epochs`` and ``session_patience``: the session masks behind
    the masks' inter-subject similarity. ``window``: occlusion's cube side and stride in
    voxels. ``ig_steps``: integrated gradients' steps. ``shuffled_epochs``: epochs of the
    shuffled-label CNN (0: the model's own ``max_epochs``). ``seed``: label permutation
    and layer re-initialisation.
    """

    methods: tuple[str, ...] = ALL_METHODS
    images: int = 6
    k: int = 5
    mask_epochs: int = 20
    mask_batch_size: int = 4
    session_epochs: int = 150
    session_patience: int = 50
    window: int = 8
    ig_steps: int = 16
    shuffled: bool = True
    shuffled_epochs: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown or not self.methods:
            raise ParameterError(
                f"--methods: unknown {', '.join(unknown) or '(none given)'}; "
                f"valid: {', '.join(ALL_METHODS)}"
            )
        for name in ("images", "k", "mask_epochs", "mask_batch_size", "session_epochs"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.images < 2:
            raise ParameterError("images must be at least 2 (inter-subject similarity)")
        if self.window < 1 or self.ig_steps < 1 or self.shuffled_epochs < 0:
            raise ParameterError("window and ig_steps must be >= 1, shuffled_epochs >= 0")


# ----------------------------------------------------------------- randomised models
def cascade_layers(model: torch.nn.Module) -> list[tuple[str, list[torch.nn.Module]]]:
    """The model's layers with parameters, from the top down: each Linear of the
    classifier, then each Conv3d with the BatchNorm that follows it.

    Named by their module path (``classifier.5``, ``features.12``).
    """
    layers: list[tuple[str, list[torch.nn.Module]]] = []
    current: tuple[str, list[torch.nn.Module]] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv3d | torch.nn.Linear):
            current = (name, [module])
            layers.append(current)
        elif isinstance(module, torch.nn.BatchNorm3d | torch.nn.BatchNorm1d) and current:
            current[1].append(module)
    if not layers:
        raise ParameterError("the model has no Conv3d or Linear layer to randomise")
    return layers[::-1]


def randomised_copy(model: torch.nn.Module, n_layers: int, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` whose top ``n_layers`` layers (``cascade_layers``) are
    re-initialised with PyTorch's default initialisation (BatchNorm: weight 1, bias 0,
    running statistics 0 and 1), layer i from seed ``seed + i``."""
    twin = copy.deepcopy(model)
    layers = cascade_layers(twin)
    if not 0 <= n_layers <= len(layers):
        raise ParameterError(f"n_layers must be in [0, {len(layers)}], got {n_layers}")
    with torch.random.fork_rng(devices=[]):
        for i, (_, modules) in enumerate(layers[:n_layers]):
            torch.manual_seed(seed + i)
            for module in modules:
                module.reset_parameters()  # type: ignore[operator]
    return twin.eval()


def shuffled_label_model(
    model_dir: Path,
    out: Path,
    *,
    epochs: int = 0,
    seed: int = 0,
    device: str = "auto",
    cache_dir=None,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model's architecture and settings trained on its own training sessions with the
    diagnoses permuted (Adebayo et al.'s data randomisation test).

    The CNN is meant to memorise the random labels, so no early stopping: it trains
    ``epochs`` epochs (0: the model's ``max_epochs``) and keeps the epoch that fits the
    permuted labels best. Resumes from its checkpoint in ``out``.
    """
    from neuromask.data.dataset import load_gm_maps
    from neuromask.mask_jobs import training_data
    from neuromask.train.config import train_config_from_mapping
    from neuromask.train.evaluate import _as_toml, load_trained_model, read_model_record
    from neuromask.train.splits_io import read_split_folder
    from neuromask.train.tensors import image_tensor, labels_of, normalize_images
    from neuromask.train.trainer import train_run

    record = read_model_record(model_dir)
    caps, split_dir, split = training_data(record, model_dir)
    config = train_config_from_mapping(_as_toml(record["train"]), str(model_dir / "config.json"))
    epochs = epochs or config.max_epochs
    config = dataclasses.replace(config, max_epochs=epochs, patience=epochs, device=device)
    train, _ = read_split_folder(split_dir, [split]).folds[split]
    train = train.reset_index(drop=True)
    data = load_gm_maps(
        caps,
        train,
        dartel_group=record.get("dartel_group"),
        cache_dir=cache_dir,
        progress=progress,
    )
    x = image_tensor(normalize_images(np.asarray(data.images), config.normalization))
    labels = labels_of(train)
    permuted = np.random.default_rng(seed).permutation(labels)
    shuffled = train.assign(diagnosis=np.where(permuted == 1, "AD", "CN"))
    every = np.arange(len(train))
    train_run(
        x,
        torch.as_tensor(permuted, dtype=torch.long),
        every,
        every,
        shuffled,
        config,
        out,
        run_seed=int(record.get("run_seed", 0)) + 1,
        record={
            "shuffled_labels_of": str(model_dir),
            "label_seed": seed,
            "fraction_changed": float(np.mean(permuted != labels)),
            **{k: record[k] for k in ("caps", "split_dir", "split", "grid") if k in record},
        },
        progress=progress,
    )
    return load_trained_model(out)


# ----------------------------------------------------------------- explanations
@dataclass
class Explanation:
    """A method's relevance maps: the group map and (for the trained CNN) per-image ROI
    vectors."""

    group: np.ndarray
    cost: Cost
    per_image: np.ndarray | None = None


def relevance_maps(
    method: str,
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    config: SanityConfig,
    atlas: Atlas,
    brain: np.ndarray,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(group map, per-image maps or None) of ``method`` on ``images``."""
    if method == MASK:
        from neuromask.explain import MeaningfulPerturbation, mask_preset

        mask_config = mask_preset(
            "group",
            max_epochs=config.mask_epochs,
            batch_size=config.mask_batch_size,
            seed=config.seed,
        )
        explainer = MeaningfulPerturbation(model, mask_config, device=device, brain_mask=brain)
        masks, _ = explainer.attribute(images.to(device), AD, mode="group")
        return 1.0 - masks[0, 0].cpu().numpy().astype(np.float64), None
    maps = attribute(
        method,
        model.to(device),
        images.to(device),
        AD,
        atlas_labels=atlas.labels,
        n_steps=config.ig_steps,
        window=config.window,
        batch_size=min(8, images.shape[0]),
    )
    per_image = maps[:, 0].abs().cpu().numpy().astype(np.float64)
    return per_image.mean(0), per_image


def session_relevance(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    config: SanityConfig,
    brain: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """1 - m of one session mask per image (preset ``session``, shortened by the config)."""
    from neuromask.explain import MeaningfulPerturbation, mask_preset

    mask_config = mask_preset(
        "session",
        max_epochs=config.session_epochs,
        patience=config.session_patience,
        batch_size=images.shape[0],
        seed=config.seed,
    )
    explainer = MeaningfulPerturbation(model, mask_config, device=device, brain_mask=brain)
    masks, _ = explainer.attribute(images.to(device), AD, mode="session")
    return 1.0 - masks[:, 0].cpu().numpy().astype(np.float64)


def roi_vector(relevance: np.ndarray, atlas: Atlas) -> np.ndarray:
    return np.nan_to_num(roi_means(relevance, atlas).to_numpy(), nan=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; a zero vector (an empty map) is similar to nothing (0)."""
    return float(cosine_matrix(np.stack([a, b]))[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either vector is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def inter_subject_similarity(vectors: np.ndarray, metric=None) -> float:
    """Mean similarity (``metric``, default cosine) over all pairs of per-image ROI
    vectors; pairs where it is undefined (NaN) are left out."""
    metric = metric or cosine
    n = len(vectors)
    pairs = [metric(vectors[i], vectors[j]) for i in range(n) for j in range(i + 1, n)]
    pairs = [p for p in pairs if not np.isnan(p)]
    return float(np.mean(pairs)) if pairs else float("nan")


# ----------------------------------------------------------------- the job
@dataclass
class SanityResult:
    out: Path
    table: pd.DataFrame
    cascade: pd.DataFrame
    sessions: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)


class _Store:
    """Relevance maps and their costs under OUT/maps/<model>/<method>, written atomically,
    so that a rerun skips what is done."""

    def __init__(self, root: Path, grid: Grid) -> None:
        self.root, self.grid = root, grid

    def _paths(self, model: str, method: str) -> tuple[Path, Path, Path]:
        base = self.root / model
        return base / f"{method}.nii.gz", base / f"{method}.json", base / f"{method}_rois.npy"

    def get(self, model: str, method: str) -> Explanation | None:
        nifti, meta, rois = self._paths(model, method)
        if not meta.is_file():
            return None
        group, _ = load_volume(nifti, self.grid, reference="the explained images")
        cost = Cost(**json.loads(meta.read_text())["cost"])
        per_image = np.load(rois) if rois.is_file() else None
        return Explanation(group.astype(np.float64), cost, per_image)

    def put(self, model: str, method: str, explanation: Explanation) -> None:
        nifti, meta, rois = self._paths(model, method)
        nifti.parent.mkdir(parents=True, exist_ok=True)
        save_volume(nifti, explanation.group, self.grid)
        if explanation.per_image is not None:
            with atomic_path(rois) as tmp, open(tmp, "wb") as f:
                np.save(f, explanation.per_image)
        with atomic_path(meta) as tmp:  # last: its presence marks the map as done
            tmp.write_text(json.dumps({"cost": explanation.cost.__dict__}))


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
    from neuromask.mask_jobs import brain_mask_of, validation_ad_sessions

    config = config or SanityConfig()
    if any(m != MASK for m in config.methods):
        require_captum()  # the baselines' extra: say it is missing before any work is done
    model_dir, out = Path(model_dir), Path(out)
    job = {
        "model_dir": str(model_dir),
        "truth": str(truth) if truth else None,
        "sanity": to_mapping(config),
        "neuromask_version": neuromask.__version__,
    }
    claim_job_dir(out, job, overwrite, "sanity_job.json")
    model, _, inputs, split_tsv = validation_ad_sessions(
        model_dir, device, cache_dir=cache_dir, progress=progress
    )
    dev = next(model.parameters()).device
    n = min(config.images, len(inputs.images))
    if n < 2:
        raise ParameterError(
            f"{split_tsv}: only {n} AD session is classified correctly; the sanity checks "
            "need at least 2"
        )
    images = inputs.images[:n].cpu()
    grid = inputs.data.grid
    atlas = load_aal2(grid)
    brain = brain_mask_of(inputs.data.images)
    sessions = inputs.sessions.iloc[:n].assign(p_ad=inputs.p_ad[:n])
    write_tsv(sessions, out / "sessions.tsv")
    truth_rois = None
    if truth is not None:
        truth_rois = read_truth_rois(truth)
        truth_map = Path(truth) / "atrophy_map.nii.gz"
        if truth_map.is_file():
            grid.require_match(read_grid(truth_map), what=str(truth_map), reference="the images")

    layers = cascade_layers(model)
    models: list[tuple[str, str, int]] = [("trained", "none", 0)]
    models += [(f"cascade-{i}", layers[i - 1][0], i) for i in range(1, len(layers) + 1)]
    if config.shuffled:
        models.append(("shuffled", "all (trained on shuffled labels)", -1))
    store = _Store(out / "maps", grid)
    common = {"config": config, "atlas": atlas, "brain": brain, "device": dev}

    def model_for(label: str, n_layers: int) -> torch.nn.Module:
        if label == "shuffled":
            twin, _ = shuffled_label_model(
                model_dir,
                out / "shuffled_cnn",
                epochs=config.shuffled_epochs,
                seed=config.seed,
                device=device,
                cache_dir=cache_dir,
                progress=progress,
            )
            return twin.to(dev).eval()
        return randomised_copy(model, n_layers, config.seed).to(dev)

    explained: dict[tuple[str, str], Explanation] = {}
    total = len(models) * len(config.methods)
    done = 0
    for label, _, n_layers in models:
        stored = {m: store.get(label, m) for m in config.methods}
        net = model_for(label, n_layers) if None in stored.values() else None
        for method in config.methods:
            done += 1
            found = stored[method]
            if found is None:
                if progress:
                    console.print(f"[bold]sanity[/bold] {done}/{total}: {method} on {label} CNN")
                assert net is not None
                (group, per_image), cost = measure(
                    lambda net=net, method=method: relevance_maps(method, net, images, **common)
                )
                rois = None
                if label == "trained":
                    if method == MASK:
                        per_image = session_relevance(
                            net, images, config=config, brain=brain, device=dev
                        )
                    rois = np.stack([roi_vector(p, atlas) for p in per_image])
                found = Explanation(group, cost, rois)
                store.put(label, method, found)
            explained[label, method] = found

    # ---- tables
    vectors = {key: roi_vector(e.group, atlas) for key, e in explained.items()}
    cascade_rows = []
    for label, layer, n_layers in models:
        for method in config.methods:
            a, b = vectors["trained", method], vectors[label, method]
            cascade_rows.append(
                {
                    "method": method,
                    "model": label,
                    "layers_randomised": n_layers,
                    "last_layer_randomised": layer,
                    "roi_similarity": cosine(a, b),
                    "spearman": spearman(a, b),
                    "empty_map": not bool(np.any(explained[label, method].group > 0)),
                }
            )
    cascade = pd.DataFrame(cascade_rows)
    full = f"cascade-{len(layers)}"
    rows = []
    for method in config.methods:
        trained = explained["trained", method]
        per = cascade[cascade["method"] == method].set_index("model")
        row: dict[str, Any] = {"method": method}
        if truth_rois is not None:
            s = localization_scores(
                trained.group, atlas, truth_rois, k=config.k, kind="attribution"
            )
            row.update(
                roi_precision_at_k=s.roi_precision_at_k,
                roi_recall_at_k=s.roi_recall_at_k,
                voxel_auc=s.voxel_auc,
                mass_accuracy=s.mass_accuracy,
                top_rois=", ".join(s.top_rois),
            )
        inter = inter_subject_similarity(trained.per_image)
        checks = [per.loc[full, "roi_similarity"]]
        row.update(
            inter_subject_similarity=inter,
            inter_subject_spearman=inter_subject_similarity(trained.per_image, spearman),
            similarity_randomised=per.loc[full, "roi_similarity"],
            spearman_randomised=per.loc[full, "spearman"],
            randomised_map_empty=bool(per.loc[full, "empty_map"]),
        )
        if config.shuffled:
            checks.append(per.loc["shuffled", "roi_similarity"])
            row.update(
                similarity_shuffled=per.loc["shuffled", "roi_similarity"],
                spearman_shuffled=per.loc["shuffled", "spearman"],
                shuffled_map_empty=bool(per.loc["shuffled", "empty_map"]),
            )
        row.update(
            passes_randomisation=bool(max(checks) < inter),
            seconds=trained.cost.seconds,
            peak_memory_mb=trained.cost.peak_memory_mb,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    write_tsv(table, out / "explainers.tsv")
    write_tsv(cascade, out / "cascade.tsv")
    shuffled_fit = None
    shuffled_dir = out / "shuffled_cnn"
    if config.shuffled and (shuffled_dir / "validation_metrics.json").is_file():
        fit = json.loads((shuffled_dir / "validation_metrics.json").read_text())
        shuffled_record = json.loads((shuffled_dir / "config.json").read_text())
        shuffled_fit = {
            "balanced_accuracy_on_its_shuffled_labels": fit["metrics"]["balanced_accuracy"],
            "fraction_of_labels_changed": shuffled_record["fraction_changed"],
            "epochs_run": fit.get("epochs_run"),
        }
    settings = {
        **job,
        "device": str(dev),
        "n_images": n,
        "cascade_layers": [name for name, _ in layers],
        "truth_rois": truth_rois,
        "shuffled_cnn": shuffled_fit,
        "torch_version": torch.__version__,
    }
    with atomic_path(out / "settings.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=2))

    from neuromask.report.sanity_figure import plot_cascade, plot_maps

    plot_cascade(cascade, table, out / "sanity.png")
    shown = ["trained", "cascade-1", f"cascade-{max(1, len(layers) // 2)}", full]
    if config.shuffled:
        shown.append("shuffled")
    shown = list(dict.fromkeys(shown))
    plot_maps(
        {(lab, m): explained[lab, m].group for lab in shown for m in config.methods},
        shown,
        list(config.methods),
        grid,
        out / "maps.png",
    )
    return SanityResult(out, table, cascade, sessions, settings)
