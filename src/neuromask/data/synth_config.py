"""Settings of a synthetic cohort (:func:`neuromask.data.synthetic.generate_cohort`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from neuromask.data.cohorts import COHORTS, CohortProfile
from neuromask.errors import ParameterError
from neuromask.io.atlas import AD_ROIS
from neuromask.io.grid import Grid, clinica_grid


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic cohort. Every field has a sensible default.

    ``atrophy_rois`` holds AAL2 names or stems (``Hippocampus`` = both hemispheres), or a
    single ``random:K`` entry that draws K ROI stems at random from the seed, for
    experiments in which the atrophied regions must not be known in advance.

    ``atrophy_heterogeneity`` h > 0 gives each AD subject its own mix of the atrophied
    regions, as AD subtypes do: region k's atrophy is weighted by exp(h z - h^2 / 2) with
    z ~ N(0, 1) drawn per subject and region (mean weight 1), the same for all of the
    subject's sessions. The weights are written to ``ground_truth/subject_atrophy.tsv``.

    ``atrophy_blobs`` K > 0 places the atrophy as K smooth Gaussian blobs (SD
    ``blob_radius_mm``) centred on gray matter at random from the seed, crossing ROI
    boundaries, instead of whole ROIs (``atrophy_rois`` is then not used). The truth is
    then voxel-level: ``atrophy_map.nii.gz`` at half its peak or above
    (:func:`neuromask.data.atrophy.truth_voxels`); ``atrophy_rois.tsv`` lists the ROIs
    whose mean pattern reaches 0.3, for the ROI-level scores. No method gets its own
    shape handed to it, as ROI ablation does with ROI-shaped truth. The blobs are drawn
    from ``blob_seed`` (default: ``seed``), so that two cohorts can share one disease.
    """

    voxel_size: float = 3.0
    subjects_per_class: int = 60
    sessions: tuple[int, int] = (1, 3)
    cohort: str = "adni"
    atrophy_rois: tuple[str, ...] = AD_ROIS
    atrophy_strength: float = 0.35
    atrophy_heterogeneity: float = 0.0
    atrophy_blobs: int = 0
    blob_radius_mm: float = 10.0
    blob_seed: int | None = None
    severity: tuple[float, float] = (0.6, 1.0)
    progression_per_year: float = 0.1
    deformation_mm: float = 2.0
    deformation_scale_mm: float = 24.0
    session_jitter_mm: float = 0.5
    head_size_sd: float = 0.02
    age_effect_per_year: float = 0.01
    noise_sd: float = 0.03
    qc_failures: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ParameterError:
            return ParameterError(
                f"SynthConfig: {name} must be {expected}, got {getattr(self, name)!r}"
            )

        if not (math.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise bad("voxel_size", "a positive number of mm")
        if self.subjects_per_class < 1:
            raise bad("subjects_per_class", "at least 1")
        lo, hi = self.sessions
        if lo < 1 or hi < lo:
            raise bad("sessions", "(min, max) with 1 <= min <= max")
        if self.cohort not in COHORTS:
            raise bad("cohort", f"one of {', '.join(COHORTS)}")
        visits = len(COHORTS[self.cohort].visit_months)
        if hi > visits:
            raise bad("sessions", f"at most {visits} per subject for cohort {self.cohort}")
        if not self.atrophy_rois:
            raise bad("atrophy_rois", "a non-empty list of ROI names")
        if not 0 <= self.atrophy_strength < 1:
            raise bad("atrophy_strength", "in [0, 1)")
        if not (math.isfinite(self.atrophy_heterogeneity) and self.atrophy_heterogeneity >= 0):
            raise bad("atrophy_heterogeneity", ">= 0")
        if not 0 <= self.severity[0] <= self.severity[1]:
            raise bad("severity", "(min, max) with 0 <= min <= max")
        for name in (
            "progression_per_year",
            "deformation_mm",
            "session_jitter_mm",
            "head_size_sd",
            "age_effect_per_year",
            "noise_sd",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, "a non-negative number")
        if self.atrophy_blobs < 0:
            raise bad("atrophy_blobs", "a non-negative count (0: whole ROIs)")
        if not (math.isfinite(self.blob_radius_mm) and self.blob_radius_mm > 0):
            raise bad("blob_radius_mm", "a positive number of mm")
        if self.deformation_scale_mm <= 0:
            raise bad("deformation_scale_mm", "positive")
        if self.qc_failures < 0:
            raise bad("qc_failures", "a non-negative count")
        if self.qc_failures > 2 * self.subjects_per_class * lo:
            raise bad("qc_failures", "no more than the number of sessions")

    @property
    def profile(self) -> CohortProfile:
        return COHORTS[self.cohort]

    @property
    def grid(self) -> Grid:
        return clinica_grid(self.voxel_size)
