"""Demographic profiles of the synthetic cohorts.

The profiles follow the shape of the paper's Table 1 (ADNI as the main cohort, AIBL as
the independent one): ages in the low-to-mid seventies with a wider spread for AD, a
slight male majority among ADNI AD subjects and a female majority in AIBL. Visit
schedules follow each study's protocol (ADNI every 6 to 12 months, AIBL every 18).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CohortProfile:
    """Demographics, visit schedule and site effect of one synthetic cohort."""

    name: str
    id_prefix: str
    age_mean: dict[str, float]
    age_sd: dict[str, float]
    male_fraction: dict[str, float]
    visit_months: tuple[int, ...]
    #: Extra Gaussian smoothing (FWHM, mm) applied by this site's processing.
    site_fwhm_mm: float
    #: Intensity curve of this site: GM values are raised to this power.
    site_gamma: float
    #: Stable integer mixed into seeds so that cohorts never share random streams.
    seed_code: int


COHORTS: dict[str, CohortProfile] = {
    "adni": CohortProfile(
        name="adni",
        id_prefix="ADNI",
        age_mean={"CN": 74.4, "AD": 75.0},
        age_sd={"CN": 5.8, "AD": 7.8},
        male_fraction={"CN": 0.48, "AD": 0.55},
        visit_months=(0, 6, 12, 24, 36, 48, 60),
        site_fwhm_mm=0.0,
        site_gamma=1.0,
        seed_code=1,
    ),
    "aibl": CohortProfile(
        name="aibl",
        id_prefix="AIBL",
        age_mean={"CN": 72.9, "AD": 73.9},
        age_sd={"CN": 6.2, "AD": 8.0},
        male_fraction={"CN": 0.43, "AD": 0.41},
        visit_months=(0, 18, 36, 54, 72),
        site_fwhm_mm=4.0,
        site_gamma=1.15,
        seed_code=2,
    ),
}
