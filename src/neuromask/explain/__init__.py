"""Explaining a frozen CNN with optimised 3D perturbation masks ("meaningful perturbation")."""

from neuromask.explain.config import MASK_PRESETS, MaskConfig, mask_preset
from neuromask.explain.perturbation import MeaningfulPerturbation, PerturbationResult

__all__ = [
    "MASK_PRESETS",
    "MaskConfig",
    "MeaningfulPerturbation",
    "PerturbationResult",
    "mask_preset",
]
