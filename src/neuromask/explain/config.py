"""Settings of mask optimisation (the presets: :mod:`neuromask.explain.presets`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from neuromask._moved import forward_names
from neuromask.errors import ParameterError
from neuromask.models.cpu_convolution import CONVOLUTIONS

SCORES = ("probability", "log_probability", "logit", "margin")
REFERENCES = ("constant", "cn_mean", "healthy")
STEP_SCALINGS = ("voxel", "mask")
PRECISIONS = ("float32", "bfloat16")
NORMALISATIONS = ("none", "gradient", "floor")


@dataclass(frozen=True)
class MaskConfig:
    """Hyperparameters of the masking loss and of its optimisation.

    The paper's loss of a mask m is ``lambda1 * sum |1 - m|^beta1 + lambda2 * sum
    ||grad m||_beta2^beta2 + f(m * X + (1 - m) * mu)``, where f is the frozen CNN's score
    for the target class (``score``: softmax probability, log-probability, logit, or the
    ``margin`` hinge). Adam with ``learning_rate`` minimises it; m stays in [0, 1].

    The defaults (preset ``group``) make a coarse mask under an area constraint (3D
    extremal perturbation) whose deleted voxels take healthy tissue:

    - ``upsample = 2`` optimises a mask 2 times coarser than the images, upsampled
      trilinearly (:mod:`neuromask.explain.parametrisation`);
    - ``area = 0.02`` replaces the size term with ``area_weight * mean((sort(m) - r)^2)``
      over the brain, r being 0 for the lowest 2 % and 1 elsewhere
      (:func:`neuromask.explain.objective.area_term`);
    - ``reference = "healthy"``: a deleted voxel takes max(X, H), H a cognitively normal
      session of the CNN's training set drawn anew for each image of each mini-batch
      (:mod:`neuromask.explain.reference`), instead of mu = 1, pure GM, which fools a
      CNN wherever it lies. The explainer needs those sessions (``reference=``); the
      mask jobs load them from the model's split;
    - ``lambda2 = 1e-4`` weights the coarse mask's smoothness: the coarse lattice is
      smooth already, and a weight of 1e-3 outweighed the score of CNNs whose score a
      2 % restoration barely moves, so that the smoothness term alone placed the mask
      (docs/mask_levers.md, round 7);
    - ``max_epochs = 12`` for that coarse stage, then ``refine_epochs = 6`` of a fine
      stage at the images' resolution, which may delete only inside the coarse mask's
      deleted region (m < ``refine_below = 0.5``) dilated by ``refine_dilation = 2``
      voxels, the same volume
      (``refine_area = 0``), with the smoothness weight ``refine_lambda2 = 2e-3``; its
      deleted components of fewer than ``refine_min_voxels = 27`` voxels are put back
      (:mod:`neuromask.explain.refine`);
    - ``score_normalisation = "floor"`` with ``score_gradient = 50``: the coarse
      stage's score (not the fine stage's) is multiplied by max(1, 50 / G), G the sum over the brain of |d f / d m| at m = 1
      (:mod:`neuromask.explain.score_scale`). A CNN whose score responds weakly to
      deletion (the demo's: G of 14 to 25) is no longer outweighed by the regularisers;
      every CNN with G >= 50 keeps its loss exactly (docs/mask_levers.md, round 8).
      With ``floor_above = 0.5`` a group mask gets the floor only when the mask found
      without it leaves the mean masked validation P(target) at 0.5 or more; a mask
      that fools its CNN stays as the score as it is made it (on the localisation
      suite, the floor in every case cost 0.025 of precision through one confident
      CNN). ``"gradient"`` multiplies by 50 / G for every CNN.
    - ``halo_sigma = 2`` voxels with ``halo_depth = 0.01``: the final group mask's kept
      voxels lose up to 1 % of their value, the more the nearer they lie to its deleted
      regions (:mod:`neuromask.explain.halo`; round 10), so that scores ranking the whole
      brain rank them by that nearness. Then ``trace_depth = 0.01``: they lose up to 1 %
      more by the CNN's smoothed mean |d f / d m| at the final mask (the gradient trace,
      :mod:`neuromask.explain.gradient_trace`; round 13).
    - ``larger_areas = (0.03, 0.04, 0.06)``: a group mask (with its fine stage) that
      leaves the mean masked validation P(target) at ``fooled_below = 0.05`` or more is
      made again at the next of these areas above ``area`` (``areas``;
      :mod:`neuromask.explain.extremal`). A mask that fools the CNN at ``area`` is left
      exactly as it was (docs/mask_levers.md, round 15). Session masks ignore it.
      Each larger area starts from the previous area's coarse mask, and its coarse
      stage runs ``larger_area_epochs = 6`` epochs (at most ``max_epochs``; 0:
      ``max_epochs``); its fine stage is unchanged. On four cohorts no setting had run
      on, 10 epochs kept the masks' scores within the rule's margins at 0.75 of the
      ladder's time (round 17). With ``larger_area_gain`` > 0 the ladder also stops,
      keeping the last mask made, when an area lowered the masked P(target) by less
      than that share of the previous area's (round 16). An area that leaves the masked
      P(target) at ``larger_area_skip_above = 0.1`` or more (twice ``fooled_below``) is
      followed by the area after next, not the next (the last area is never skipped;
      0: never skip): 2, 4, 6 % for a mask far from fooled; one that nearly fools steps
      to 3 % as before (round 18; docs/mask_levers.md).

    On reserved synthetic cohorts (``benchmarks/mask_levers.py``, ``docs/mask_levers.md``)
    the voxel-level mask (preset ``voxel``) fooled the CNN with scattered voxels
    (coherence 0.23-0.39) while the area-constrained masks deleted regions (coherence
    0.9-1.0), and the healthy reference at 2 % beat mu = 1 at 5 % on ROI precision, mass,
    coherence and insertion (round 4). On the localisation suite's five cohorts, which
    nothing was tuned on, it beat the mu = 1 mask at 5 % (the defaults before) on voxel
    AUC (0.865 against 0.836), ROI precision (0.65 against 0.47), mass (0.45 against
    0.27), coherence, and insertion from the healthy version (0.91 against 0.81, the
    best of every method; docs/suite_history.md). The fine stage (round 6) then raised the suite's
    mass from 0.45 to 0.59 and the voxel AUC from 0.865 to 0.885, and brought the
    masked P(AD) with healthy tissue from 0.29 to 0.015, at a lower cost (20 + 10
    epochs against 40), for a slightly lower ROI precision (0.63 against 0.65) and
    coherence (0.94 against 0.98). ``refine_epochs = 0`` (preset ``group-coarse``, at
    most 40 epochs, with the coarse smoothness weight of 1e-3 it was measured with)
    turns it off. Round 7 lowered the coarse smoothness weight to 1e-4 and the fine one
    to 2e-3, and put back the fine stage's specks (docs/suite_history.md). Round 9 bounded the
    fine stage's region to the coarse mask's core (``refine_below = 0.5``) grown by two
    voxels (``refine_dilation = 2``; preset ``group-wide`` keeps round 8's 0.95 and 1):
    on the suite, mass 0.64 against 0.46 and coherence 0.96 against 0.92. Preset
    ``group-sufficient`` grows the coarse mask alone through 2, 4 and 8 % (round 5).

    Other levers: ``score = "margin"`` stops rewarding deletion once the CNN prefers
    another class by ``margin`` logits; ``jitter`` rolls the images against a group
    mask by up to that many voxels per step; ``step_scaling = "mask"`` gives Adam one
    denominator per mask instead of one per voxel; ``reference = "cn_mean"`` fills
    deleted voxels with a reference image (the mean CN map of the training set, given
    to the explainer) instead of ``mu``; ``reference = "healthy"`` restores deleted
    voxels to healthy tissue, max(X, H) for H a CN training session drawn anew for each
    image of each mini-batch (:mod:`neuromask.explain.reference`).

    The voxel-level weights (preset ``voxel``; lambda1 is unused under ``area``) were
    chosen with ``benchmarks/mask_localisation.py``, where the CNN is confident (P(AD)
    near 0.998):

    - ``score`` is the logit. Masks optimised on the probability or the log-probability
      never left m = 1: their per-voxel gradients, shrunk by the softmax's saturation,
      stayed below the size term's slope at m = 1. The logit's do not saturate.
    - ``lambda1 = lambda2 = 1e-3``. The paper's values (1e-4 and 1e-2, preset ``paper``)
      were set for a probability in [0, 1]; against a logit, their smoothness weight kept
      the mask to a few hundred scattered voxels.

    ``restrict_to_brain`` (default on) keeps the mask at 1 outside a brain mask (the
    mask jobs derive it from the data: mean GM above 0.05, dilated by a voxel). With
    mu = 1, deleting background would add GM where there is none. On the same cohort, the
    restriction raised the share of atrophied ROIs among the five densest from 0.4 to 0.6.

    ``size_epsilon`` makes the size term finite and differentiable at m = 1 when
    beta1 < 1: it uses ``(|1 - m| + eps)^beta1 - eps^beta1``, which is 0 at m = 1 and
    whose slope there is ``beta1 * eps^(beta1 - 1)`` instead of infinity.

    ``precision = "bfloat16"`` runs the frozen CNN's forward pass and its backward pass
    to the input under bfloat16 autocast (on the GPU or the CPU); the masks, the
    regularisers, the score and Adam stay in float32, and so do the validation passes.

    ``convolution = "onednn"`` (the default in rounds 24 to 26) runs the frozen CNN's 3D
    convolutions in the mask steps through oneDNN on the CPU, which PyTorch leaves for a
    slower kernel at mini-batch 1 (:mod:`neuromask.models.cpu_convolution`); the masks
    then differ from ``"auto"``'s at the level of float rounding. Its 3D max pooling
    runs its forward pass on a channels-last copy, which gives the same values and
    gradient bit for bit, faster. ``"onednn-backward"`` (the default since round 27)
    also computes the input gradient of the stride-1 convolutions through oneDNN, as a
    convolution with flipped kernels, where PyTorch's backward takes its native kernel
    again; its masks differ from ``"onednn"``'s at the level of float rounding. Judged
    on eight fresh tuning cohorts (rounds 26 and 27, the second time on three mask
    seeds) and then on the localisation suite's six cohorts, it kept the defaults'
    margins at 0.68 to 0.71 of their CPU time (docs/mask_levers.md). On a GPU neither
    value changes anything.

    Round 24 made these epochs (12 + 6 at the first area, 6 + 6 at each larger one) and
    oneDNN the defaults (F12): judged on the mean of two mask seeds on four fresh tuning
    cohorts (round 22) and then on the localisation suite's six cohorts, they kept the
    previous defaults' scores at 0.63 of their summed time. Preset ``group-r23`` keeps
    round 23's defaults (20 + 10 epochs, 10 at each larger area, PyTorch's choice of
    kernel; docs/mask_levers.md, round 24).

    ``batch_size = 0`` (session masks only) optimises as many masks at once as the
    device's free memory holds (:mod:`neuromask.explain.batch_size`; 1 on the CPU).

    Early stopping: an epoch whose monitored loss exceeds the best one by more than
    ``tolerance`` (relative) counts against ``patience``; after ``patience`` such epochs in
    a row the optimisation stops and the best mask is kept. Values above ``keep_above``
    are then set to 1.

    ``validate_every`` (group masks): the mask is judged (its validation loss and
    P(target) computed, early stopping updated, the mask kept if it is the best so far)
    after every ``validate_every``-th epoch of a stage and after the stage's last, so
    that ``patience`` counts judged epochs. 1, the default: after every epoch. The
    validation pass is a forward pass over every validation image. Round 25: 3 kept
    round 22's margins on four tuning cohorts at 0.885 of the defaults' CPU time on one
    thread, but saved little on two (docs/mask_levers.md, round 25).
    """

    beta1: float = 0.1
    beta2: float = 1.0
    lambda1: float = 1e-3
    lambda2: float = 1e-4
    learning_rate: float = 0.1
    mu: float = 1.0
    score: str = "logit"
    size_epsilon: float = 1e-2
    max_epochs: int = 12
    patience: int = 5
    tolerance: float = 0.05
    validate_every: int = 1
    batch_size: int = 1
    keep_above: float = 0.95
    restrict_to_brain: bool = True
    seed: int = 0
    margin: float = 3.0
    upsample: int = 2
    jitter: int = 0
    reference: str = "healthy"
    area: float = 0.02
    area_weight: float = 100.0
    step_scaling: str = "voxel"
    larger_areas: tuple[float, ...] = (0.03, 0.04, 0.06)
    fooled_below: float = 0.05
    larger_area_epochs: int = 6
    larger_area_gain: float = 0.0
    larger_area_skip_above: float = 0.1
    precision: str = "float32"
    convolution: str = "onednn-backward"
    refine_epochs: int = 6
    refine_dilation: int = 2
    refine_lambda2: float = 2e-3
    refine_area: float = 0.0
    refine_min_voxels: int = 27
    refine_below: float = 0.5
    score_normalisation: str = "floor"
    score_gradient: float = 50.0
    floor_above: float = 0.5
    halo_sigma: float = 2.0
    halo_depth: float = 0.01
    trace_depth: float = 0.01

    @property
    def areas(self) -> tuple[float, ...]:
        """The areas a group mask tries in turn: ``area``, then those of
        ``larger_areas`` above it; ``area`` alone without an area constraint (0)."""
        return (self.area, *(a for a in self.larger_areas if a > self.area > 0))

    @property
    def larger_area_max_epochs(self) -> int:
        """The coarse epochs of each larger area: ``larger_area_epochs``, at most
        ``max_epochs`` (0: ``max_epochs``)."""
        return min(self.larger_area_epochs or self.max_epochs, self.max_epochs)

    @property
    def refines(self) -> bool:
        """Whether a group mask gets the fine stage: ``refine_epochs`` > 0 and a coarse
        mask under an area constraint (``upsample`` > 1, ``area`` > 0), whose region it
        refines. Session masks and voxel-level masks have none."""
        return self.refine_epochs > 0 and self.upsample > 1 and self.area > 0

    @property
    def fine_epochs(self) -> int:
        """The fine stage's epochs at each area: ``refine_epochs`` where the mask
        :attr:`refines`, else 0."""
        return self.refine_epochs if self.refines else 0

    @property
    def first_area_epochs(self) -> int:
        """The most epochs a group mask runs at its first area: ``max_epochs`` of the
        coarse mask and its fine stage's."""
        return self.max_epochs + self.fine_epochs

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ParameterError:
            return ParameterError(
                f"mask setting {name} must be {expected}, got {getattr(self, name)!r}"
            )

        for name in ("beta1", "beta2", "learning_rate", "size_epsilon"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise bad(name, "> 0")
        for name in ("lambda1", "lambda2", "tolerance", "refine_lambda2", "halo_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, ">= 0")
        if not math.isfinite(self.mu):
            raise bad("mu", "a finite number")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise bad("margin", ">= 0 (logit units)")
        if self.upsample < 1:
            raise bad("upsample", "at least 1 (1: the mask has the images' resolution)")
        if self.jitter < 0:
            raise bad("jitter", ">= 0 voxels")
        if not (math.isfinite(self.area) and 0 <= self.area < 1):
            raise bad("area", "in [0, 1) (0: the size term; else the deleted share of the brain)")
        if not (math.isfinite(self.area_weight) and self.area_weight > 0):
            raise bad("area_weight", "> 0")
        self._check_ladder(bad)
        if self.refine_epochs < 0:
            raise bad("refine_epochs", ">= 0 (0: no fine stage)")
        if self.refine_dilation < 0:
            raise bad("refine_dilation", ">= 0 voxels")
        top = max(self.areas)
        if not (math.isfinite(self.refine_area) and 0 <= self.refine_area <= top):
            raise bad(
                "refine_area",
                f"in [0, {top:g}] (0: the coarse mask's area; the fine stage deletes "
                "inside the coarse region, so at most the largest area)",
            )
        if not (math.isfinite(self.refine_below) and 0 < self.refine_below <= 1):
            raise bad("refine_below", "in (0, 1] (the coarse mask's values that bound the region)")
        if self.refine_min_voxels < 0:
            raise bad("refine_min_voxels", ">= 0 voxels (0: keep every deleted component)")
        for name in ("halo_depth", "trace_depth"):
            if not (math.isfinite(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                raise bad(name, "in [0, 1) (the most a kept voxel loses of its value)")
        if not (math.isfinite(self.floor_above) and 0 <= self.floor_above < 1):
            raise bad("floor_above", "in [0, 1) (a mean P(target); 0: the floor always)")
        if not (math.isfinite(self.score_gradient) and self.score_gradient > 0):
            raise bad("score_gradient", "> 0 (the score's gradient mass over the brain)")
        for name, valid in (
            ("score_normalisation", NORMALISATIONS),
            ("step_scaling", STEP_SCALINGS),
            ("reference", REFERENCES),
            ("precision", PRECISIONS),
            ("convolution", CONVOLUTIONS),
            ("score", SCORES),
        ):
            if getattr(self, name) not in valid:
                raise bad(name, f"one of {', '.join(valid)}")
        for name in ("max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise bad(name, "at least 1")
        if self.validate_every < 1:
            raise bad("validate_every", "at least 1 (1: the mask is judged after every epoch)")
        if self.batch_size < 0:
            raise bad(
                "batch_size",
                "at least 1, or 0 (session masks: the largest batch the "
                "device's free memory holds)",
            )
        if not 0 < self.keep_above <= 1:
            raise bad("keep_above", "in (0, 1]")

    def _check_ladder(self, bad: Callable[[str, str], ParameterError]) -> None:
        """The settings of the area ladder (``larger_areas`` and what steers it)."""
        if not (math.isfinite(self.fooled_below) and 0 < self.fooled_below < 1):
            raise bad("fooled_below", "in (0, 1) (a mean P(target))")
        ladder = self.larger_areas
        if any(not (math.isfinite(a) and 0 < a < 1) for a in ladder) or any(
            b <= a for a, b in zip(ladder, ladder[1:], strict=False)
        ):
            raise bad("larger_areas", "areas in (0, 1) that rise strictly ([]: one area only)")
        if self.larger_area_epochs < 0:
            raise bad("larger_area_epochs", ">= 0 (0: max_epochs at every area)")
        if not (math.isfinite(self.larger_area_gain) and 0 <= self.larger_area_gain < 1):
            raise bad("larger_area_gain", "in [0, 1) (0: the ladder stops only when fooled)")
        skip = self.larger_area_skip_above
        if not (math.isfinite(skip) and 0 <= skip <= 1):
            raise bad("larger_area_skip_above", "in [0, 1] (0: the ladder never skips an area)")


#: Names that moved to :mod:`neuromask.explain.presets` (round 16); the old path warns.
__getattr__ = forward_names(
    __name__, "neuromask.explain.presets", ("MASK_PRESETS", "PAPER_SIZE_EPSILON", "mask_preset")
)
