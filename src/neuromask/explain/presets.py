"""The named presets of mask optimisation (``--preset``), the paper's among them."""

from __future__ import annotations

import dataclasses
from typing import Any

from neuromask.config import ConfigError, from_mapping, to_mapping
from neuromask.errors import ParameterError
from neuromask.explain.config import MaskConfig

#: The size-term guard of the ``paper`` presets: 2^-24, the smallest non-zero 1 - m that
#: float32 holds for m < 1 (m's spacing just below 1), so no reachable m tells a smaller
#: guard from none. The size term's gradient, which is all the optimiser sees, is then
#: the paper's beta1 * |1 - m|^(beta1 - 1) to within 1 % wherever 1 - m >= 1e-5, and at
#: m = 1 it is finite (3.2e5 for beta1 = 0.1) instead of infinite.
PAPER_SIZE_EPSILON = 2.0**-24


def _paper(**fields: Any) -> MaskConfig:
    """The paper's method, field by field, so that it never moves with the defaults:
    f = P(AD) (the softmax probability, as Fong & Vedaldi and the paper's "< 1e-6"),
    the mask over the whole image, mu = 1, lr 0.1, its early stopping."""
    paper = {
        "beta1": 0.1,
        "beta2": 1.0,
        "lambda1": 1e-4,
        "lambda2": 1e-2,
        "learning_rate": 0.1,
        "mu": 1.0,
        "score": "probability",
        "size_epsilon": PAPER_SIZE_EPSILON,
        "max_epochs": 150,
        "patience": 5,
        "tolerance": 0.05,
        "validate_every": 1,
        "batch_size": 1,
        "keep_above": 0.95,
        "restrict_to_brain": False,
        "upsample": 1,
        "area": 0.0,
        "jitter": 0,
        "reference": "constant",
        "step_scaling": "voxel",
        "larger_areas": (),
        "larger_area_epochs": 10,
        "refine_epochs": 0,
        "score_normalisation": "none",
        "halo_sigma": 0.0,
        "trace_depth": 0.0,
        "precision": "float32",
        "convolution": "auto",
    }
    return MaskConfig(**{**paper, **fields})


#: Round 23's defaults, where round 24's changed them (F12): 20 coarse and 10 fine epochs
#: at the first area, 10 coarse epochs at each larger one, PyTorch's own choice of
#: convolution kernel. The presets made before round 24 keep them, so that they make the
#: masks they made then (preset ``group-r23``: round 23's defaults themselves).
_R23: dict[str, Any] = {
    "max_epochs": 20,
    "refine_epochs": 10,
    "larger_area_epochs": 10,
    "convolution": "auto",
}


def _before_r24(**fields: Any) -> MaskConfig:
    """A preset made before round 24: round 23's defaults with ``fields`` on top."""
    return MaskConfig(**{**_R23, **fields})


#: The voxel-level mask: the paper's size term instead of the area constraint, at the
#: images' resolution, mu = 1, at most 150 epochs (the defaults until the localisation
#: suite).
_VOXEL: dict[str, Any] = {
    "lambda2": 1e-3,
    "score_normalisation": "none",
    "area": 0.0,
    "upsample": 1,
    "max_epochs": 150,
    "reference": "constant",
    "refine_epochs": 0,
    "halo_sigma": 0.0,
    "trace_depth": 0.0,
    "larger_areas": (),
}

#: The coarse mask alone, at most 40 epochs, with the smoothness weight it was measured
#: with: the defaults of rounds 4 and 5, before the fine stage (docs/mask_levers.md).
_COARSE: dict[str, Any] = {
    "larger_areas": (),
    "halo_sigma": 0.0,
    "trace_depth": 0.0,
    "refine_epochs": 0,
    "max_epochs": 40,
    "lambda2": 1e-3,
    "score_normalisation": "none",
}

#: The area-constrained coarse mask with mu = 1 at 5 %: the defaults of round 3, before
#: the healthy reference (docs/mask_levers.md).
_MU: dict[str, Any] = {**_COARSE, "reference": "constant", "area": 0.05}

#: The coarse mask at 2, 4 and 8 % in turn until it fools the CNN, each area for up to
#: 40 epochs (round 5).
_SUFFICIENT: dict[str, Any] = {
    **_COARSE,
    "larger_areas": (0.04, 0.08),
    "larger_area_epochs": 0,
    "larger_area_skip_above": 0.0,
}

#: The group defaults' coarse stage, run on each session alone: 2 % of the brain restored
#: to healthy tissue, a lattice twice as coarse, at most 30 epochs (the group mask's 20 +
#: 10), without the fine stage, the halo, the trace and the larger areas, which session
#: masks do not have (round 17; docs/mask_levers.md).
_SESSION_AREA: dict[str, Any] = {
    "max_epochs": 30,
    "larger_areas": (),
    "refine_epochs": 0,
    "halo_sigma": 0.0,
    "trace_depth": 0.0,
}

#: The group defaults with the frozen CNN in bfloat16 and fewer epochs: at most 12 coarse
#: and 6 fine epochs at the first area, 6 coarse and 6 fine at each larger one. Chosen in
#: round 20 by a rule written before its runs, on four cohorts no setting had seen
#: (docs/mask_levers.md): within round 17's margins of the defaults on every cohort, in
#: 0.38 of their summed time. bfloat16 is fast only where the hardware has it (CPUs
#: with AVX-512 BF16 or AMX, GPUs since Ampere); elsewhere it may run slower than float32.
_FAST: dict[str, Any] = {
    "precision": "bfloat16",
    "convolution": "auto",
    "max_epochs": 12,
    "refine_epochs": 6,
    "larger_area_epochs": 6,
}

#: Presets. ``group``: the defaults, for group masks (a mask 2 times coarser than the
#: images that restores 2 % of the brain to healthy tissue, logit score, at most 12
#: epochs, then refined at the images' resolution inside its region for at most 6;
#: both again at 3, 4 and 6 % until the mask fools the CNN, each larger area's coarse
#: stage for at most 6 epochs, skipping the next area after one that leaves P(AD) at
#: 0.1 or more; oneDNN's convolutions and their input gradients on the CPU, since round
#: 27). ``group-r23``: round 23's defaults
#: (20 + 10 epochs, 10 at each larger area, PyTorch's choice of kernel), the defaults
#: that the suite measured F12 against in round 24; the presets below were made before
#: round 24 and keep those values where they do not set their own, but ``small-cohort``.
#: ``group-fast``: round 23's defaults in bfloat16 with fewer epochs (above).
#: ``group-coarse``: the coarse mask alone, at most 40 epochs, the defaults before the
#: fine stage. ``group-mu``: the coarse mask deleting 5 % with mu = 1, the defaults
#: before the healthy reference. ``group-sufficient``: the coarse mask, grown to 4 and
#: then 8 % until it fools the CNN (masked P(AD) below 0.05). ``group-wide``: round 8's
#: defaults, whose fine stage may delete wherever the coarse mask moved (m < 0.95,
#: dilated by one voxel; docs/mask_levers.md, round 9). ``voxel``: the
#: voxel-level mask (the paper's size term with lambda1 = lambda2 = 1e-3, mu = 1, logit,
#: at most 150 epochs), the defaults before the localisation suite; see
#: docs/mask_levers.md.
#: ``paper``: the paper's group setting (lambda1 1e-4, lambda2 1e-2), the probability
#: score, the mask over the whole image, pinned field by field so that it never moves
#: with the defaults; ``paper-session``: its session form (the weights times 100,
#: patience 200, at most 5,000 epochs, tolerance 0.01). ``small-cohort``: the group
#: defaults with the paper's early stopping for the smaller independent cohort (patience
#: 25, at most 300 epochs of the coarse stage; since round 24, with the defaults' fine and
#: larger-area epochs and oneDNN, since round 27 its input gradients too). ``session``:
#: one mask per session,
#: voxel-level (the area constraint was not measured on single sessions), with the
#: paper's early stopping (no validation set, patience 200, at most 5,000 epochs,
#: tolerance 0.01) and the voxel weights. The paper multiplies its group weights by 100
#: for sessions. Measured on the CNNs of two synthetic cohorts, 100 times the voxel
#: weights kept every session mask of one at its all-ones start, and 10 times did so on
#: the other; the weights as they are fooled both CNNs on every session.
#: ``session-area``: one mask per session under round 23's group defaults' area constraint and
#: healthy reference (their coarse stage, at most 30 epochs); on a cohort no setting was
#: chosen on, it localised better than ``session`` at the demo's 150 epochs, in a quarter
#: of the time; on the demo's weak CNN it did not fool the CNN (P(AD) 0.82 after
#: masking; round 17).
MASK_PRESETS: dict[str, MaskConfig] = {
    "group": MaskConfig(),
    "group-r23": _before_r24(),
    "group-coarse": _before_r24(**_COARSE),
    "group-mu": _before_r24(**_MU),
    "group-sufficient": _before_r24(**_SUFFICIENT),
    "group-wide": _before_r24(
        refine_below=0.95, refine_dilation=1, halo_sigma=0.0, trace_depth=0.0, larger_areas=()
    ),
    "voxel": _before_r24(**_VOXEL),
    "paper": _paper(),
    "small-cohort": MaskConfig(patience=25, max_epochs=300),
    "session": _before_r24(**{**_VOXEL, "patience": 200, "max_epochs": 5000, "tolerance": 0.01}),
    "session-area": _before_r24(**_SESSION_AREA),
    "paper-session": _paper(
        lambda1=1e-2, lambda2=1.0, patience=200, max_epochs=5000, tolerance=0.01
    ),
    "group-fast": _before_r24(**_FAST),
}


def mask_preset(name: str, **overrides: Any) -> MaskConfig:
    """A preset by name, with fields replaced.

    >>> mask_preset("session").patience
    200
    """
    if name not in MASK_PRESETS:
        raise ParameterError(
            f"Unknown mask preset {name!r}; valid names: {', '.join(MASK_PRESETS)}"
        )
    return dataclasses.replace(MASK_PRESETS[name], **overrides) if overrides else MASK_PRESETS[name]


def preset_with(
    data: dict[str, Any], default: MaskConfig, source: str, **overrides: Any
) -> MaskConfig:
    """A table of mask settings (a study's ``[mask]``, ``sanity --mask-config``): the
    preset it names (``preset = "NAME"``) or ``default``, with ``overrides`` and then the
    table's other keys on top. Errors name ``source``."""
    data = dict(data)
    name = data.pop("preset", None)
    if name is not None:
        if not isinstance(name, str) or name not in MASK_PRESETS:
            raise ConfigError(
                f"{source}: preset {name!r} is not a mask preset; valid: {', '.join(MASK_PRESETS)}"
            )
        default = MASK_PRESETS[name]
    base = dataclasses.replace(default, **overrides) if overrides else default
    return from_mapping(MaskConfig, {**to_mapping(base), **data}, source=source)
