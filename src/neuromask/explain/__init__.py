"""Explaining a frozen CNN with optimised 3D perturbation masks ("meaningful perturbation")."""

from neuromask.explain.config import MaskConfig
from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult
from neuromask.explain.presets import MASK_PRESETS, mask_preset

__all__ = [
    "MASK_PRESETS",
    "MaskConfig",
    "MeaningfulPerturbation",
    "PerturbationResult",
    "mask_preset",
]
