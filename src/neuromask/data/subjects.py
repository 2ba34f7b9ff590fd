"""Drawing the subjects of a synthetic cohort from its demographic profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from neuromask.data.synthetic import SynthConfig


@dataclass(frozen=True)
class SubjectDraw:
    """One synthetic subject: demographics, disease severity, anatomy and visits."""

    participant_id: str
    diagnosis: str
    sex: str
    baseline_age: float
    severity: float
    head_scale: float
    visit_months: tuple[int, ...]
    #: One weight per atrophied region (stem); all 1 without heterogeneity.
    region_weights: tuple[float, ...] = ()


def draw_subject(
    config: SynthConfig, diagnosis: str, index: int, number: int, n_regions: int = 0
) -> SubjectDraw:
    """Subject ``index`` of a cohort, drawn from its own seed (the same subject whatever
    else the cohort holds)."""
    profile = config.profile
    rng = np.random.default_rng([config.seed, profile.seed_code, index, 0])
    age = float(np.clip(rng.normal(profile.age_mean[diagnosis], profile.age_sd[diagnosis]), 55, 92))
    sex = "M" if rng.random() < profile.male_fraction[diagnosis] else "F"
    severity = float(rng.uniform(*config.severity)) if diagnosis == "AD" else 0.0
    head_scale = float(1.0 + rng.normal(0.0, config.head_size_sd))
    n_sessions = int(rng.integers(config.sessions[0], config.sessions[1] + 1))
    weights: tuple[float, ...] = ()
    h = config.atrophy_heterogeneity
    if h > 0 and diagnosis == "AD" and n_regions > 0:
        z = np.random.default_rng([config.seed, profile.seed_code, index, 4]).standard_normal(
            n_regions
        )
        weights = tuple(float(w) for w in np.exp(h * z - h * h / 2))
    return SubjectDraw(
        participant_id=f"sub-{profile.id_prefix}{number:04d}",
        diagnosis=diagnosis,
        sex=sex,
        baseline_age=round(age, 1),
        severity=severity,
        head_scale=head_scale,
        visit_months=profile.visit_months[:n_sessions],
        region_weights=weights,
    )
