"""The maps that ``neuromask sanity`` compares: every method's relevance maps on a CNN,
stored so that a rerun skips what is done, and the job's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.baselines import METHODS, REFERENCED, Cost, attribute
from neuromask.explain.presets import preset_with
from neuromask.io.atlas import Atlas
from neuromask.io.atomic import atomic_path
from neuromask.io.grid import Grid
from neuromask.io.nifti import load_volume, save_volume
from neuromask.jobs.faithfulness import healthy_versions

MASK = "mask"
ALL_METHODS = (MASK, *METHODS)
AD = 1
#: What occlusion, ROI ablation and integrated gradients compare each image with.
BASELINE_REFERENCES = ("mu", "healthy")


@dataclass
class SanityConfig:
    """Settings of ``neuromask sanity``.

    ``images``: how many correctly classified validation AD sessions are explained (the
    first ones, in table order). ``mask_epochs`` and ``mask_batch_size``: the group mask
    (preset ``group`` otherwise; with no validation set, early stopping follows the
    training loss). ``mask_settings``: mask settings on top of those, so that any
    setting can be checked (the keys of ``neuromask mask group --config``; with
    ``preset = "NAME"``, that preset takes ``mask_epochs``, ``mask_batch_size`` and
    ``seed`` instead of ``group``). ``session_epochs`` and ``session_patience``: the
    session masks behind the masks' inter-subject similarity. ``window``: occlusion's
    cube side and stride in voxels. ``ig_steps``: integrated gradients' steps.
    ``shuffled_epochs``: epochs of the shuffled-label CNN (0: the model's own
    ``max_epochs``). ``seed``: label permutation and layer re-initialisation.
    ``baseline_reference``: what occlusion and ROI ablation put where they remove, and
    where integrated gradients start: ``"mu"`` (the constant μ = 1, the paper's fill) or
    ``"healthy"`` (each image's healthy version max(X, H), the default masks' fill;
    image i with CN training session i mod K).
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
    mask_settings: dict[str, Any] = field(default_factory=dict)
    baseline_reference: str = "mu"

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
        if self.baseline_reference not in BASELINE_REFERENCES:
            raise ParameterError(
                f"baseline_reference must be one of {', '.join(BASELINE_REFERENCES)}, "
                f"got {self.baseline_reference!r}"
            )

    @property
    def fills_differ(self) -> bool:
        """Whether the group mask restores healthy tissue while the baselines asked for
        remove with μ: a comparison under two perturbations."""
        return (
            MASK in self.methods
            and self.baseline_reference == "mu"
            and any(m in REFERENCED for m in self.methods)
            and self.group_mask_config().reference == "healthy"
        )

    @property
    def needs_healthy_baselines(self) -> bool:
        """Whether a baseline asked for takes each image's healthy version."""
        return self.baseline_reference == "healthy" and any(m in REFERENCED for m in self.methods)

    def group_mask_config(self, source: str = "sanity mask_settings") -> MaskConfig:
        """The settings of the group masks explained (errors name ``source``)."""
        return preset_with(
            self.mask_settings,
            mask_preset("group"),
            source,
            max_epochs=self.mask_epochs,
            batch_size=self.mask_batch_size,
            seed=self.seed,
        )


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
    healthy: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(group map, per-image maps or None) of ``method`` on ``images``; ``healthy``: the
    CN training sessions of the healthy reference (the default mask's, and the
    baselines' under ``baseline_reference = "healthy"``)."""
    if method == MASK:
        mask_config = config.group_mask_config()
        explainer = MeaningfulPerturbation(
            model, mask_config, device=device, brain_mask=brain, reference=healthy
        )
        masks, _ = explainer.attribute(images.to(device), AD, mode="group")
        return 1.0 - masks[0, 0].cpu().numpy().astype(np.float64), None
    reference = None
    if method in REFERENCED and config.baseline_reference == "healthy":
        if healthy is None:
            raise ParameterError(f"baseline_reference = 'healthy': {method} needs CN sessions")
        reference = healthy_versions(healthy, images).to(device)
    maps = attribute(
        method,
        model.to(device),
        images.to(device),
        AD,
        reference=reference,
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


@dataclass
class SanityResult:
    out: Path
    table: pd.DataFrame
    cascade: pd.DataFrame
    sessions: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)


class MapStore:
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
