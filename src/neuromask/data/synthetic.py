"""Synthetic CAPS cohorts with known ground truth.

Each subject's GM map is the ICBM152 GM template after, in this order:

1. atrophy (AD only): GM is multiplied by ``1 - strength * severity * pattern`` where
   ``pattern`` is 1 inside the atrophied ROIs and falls off smoothly around them, and the
   severity grows over the subject's sessions;
2. an age effect: GM values are raised to the power ``1 + age_effect_per_year * (age - 70)``,
   which thins partial-volume voxels (cortex) while saturated voxels stay at 1, as the
   maximum of a real probability map does;
3. a smooth random deformation (the subject's anatomy plus a small per-session
   registration jitter) and a head-size scaling about the brain's centre;
4. the site effect of its cohort (extra smoothing, an intensity curve);
5. smooth noise, clipped to [0, 1], with values below 0.01 set to 0 as segmentations do.

The ground truth lands in ``OUT/ground_truth/``:

- ``atrophy_map.nii.gz``: the fraction of GM that an AD subject of severity 1 loses, per
  voxel, on the template (before deformation);
- ``atrophy_rois.tsv``: the atrophied AAL2 ROIs (value, name, voxels on the grid);
- ``sessions.tsv``: per session, diagnosis, atrophy severity and injected QC failure;
- ``synth.json``: every setting, the seed and the neuromask version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

import neuromask
from neuromask.data.cohorts import COHORTS, CohortProfile
from neuromask.errors import ParameterError
from neuromask.io.atlas import AD_ROIS, Atlas, load_aal2, roi_stem
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import Grid, clinica_grid
from neuromask.io.nifti import save_volume
from neuromask.io.participants import write_tsv
from neuromask.io.template import gm_template
from neuromask.progress import track

#: GM values below this are set to 0, as in SPM segmentations.
ZERO_BELOW = 0.01
QC_FAILURE_KINDS = ("block", "low_max")


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
    """

    voxel_size: float = 3.0
    subjects_per_class: int = 60
    sessions: tuple[int, int] = (1, 3)
    cohort: str = "adni"
    atrophy_rois: tuple[str, ...] = AD_ROIS
    atrophy_strength: float = 0.35
    atrophy_heterogeneity: float = 0.0
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


@dataclass
class SynthResult:
    """Where a synthetic cohort was written."""

    out: Path
    caps: Path
    participants: Path
    ground_truth: Path
    n_subjects: int
    n_sessions: int
    atrophy_rois: list[str] = field(default_factory=list)


def resolve_atrophy_rois(config: SynthConfig, atlas: Atlas) -> list[str]:
    """The ROI names (with hemisphere) that AD subjects lose GM in."""
    rois = list(config.atrophy_rois)
    if len(rois) == 1 and rois[0].startswith("random:"):
        try:
            k = int(rois[0].split(":", 1)[1])
        except ValueError:
            raise ParameterError(
                f"atrophy_rois: 'random:K' needs an integer K, got {rois[0]!r}"
            ) from None
        stems = sorted({roi_stem(name) for name in atlas.names})
        if not 1 <= k <= len(stems):
            raise ParameterError(
                f"atrophy_rois: K in 'random:K' must be in 1..{len(stems)}, got {k}"
            )
        rng = np.random.default_rng([config.seed, config.profile.seed_code, 7])
        rois = [stems[i] for i in sorted(rng.choice(len(stems), size=k, replace=False))]
    return atlas.resolve(rois)


def atrophy_pattern(atlas: Atlas, roi_names: list[str]) -> np.ndarray:
    """1 inside the ROIs, a smooth fall-off (sigma 3 mm) outside them; float32."""
    inside = atlas.mask(roi_names).astype(np.float32)
    sigma = 3.0 / np.asarray(atlas.grid.voxel_size)
    return np.maximum(inside, ndimage.gaussian_filter(inside, sigma=sigma)).astype(np.float32)


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_vox: float, sd: float
) -> np.ndarray:
    """A smooth random field on ``shape``: Gaussian noise on a coarse lattice of
    ``spacing_vox`` voxels, interpolated by cubic splines, scaled to standard deviation ``sd``.

    The interpolation is separable, so it is applied as three small matrix products
    (one per axis) rather than a 3D spline evaluation at every voxel.
    """
    coarse_shape = tuple(max(2, int(math.ceil(s / spacing_vox)) + 1) for s in shape)
    fine = rng.standard_normal(coarse_shape).astype(np.float32)
    for axis, (n_fine, n_coarse) in enumerate(zip(shape, coarse_shape, strict=True)):
        weights = _cubic_upsampling(n_fine, n_coarse)
        fine = np.moveaxis(np.tensordot(weights, fine, axes=([1], [axis])), 0, axis)
    std = float(fine.std())
    return (fine * (sd / std if std > 0 else 0.0)).astype(np.float32)


@lru_cache(maxsize=32)
def _cubic_upsampling(n_fine: int, n_coarse: int) -> np.ndarray:
    """The (n_fine, n_coarse) matrix of 1D cubic-spline interpolation (corners aligned)."""
    eye = np.eye(n_coarse, dtype=np.float64)
    columns = [
        ndimage.zoom(eye[i], n_fine / n_coarse, order=3, mode="nearest", grid_mode=False)[:n_fine]
        for i in range(n_coarse)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


@dataclass(frozen=True)
class _SubjectDraw:
    participant_id: str
    diagnosis: str
    sex: str
    baseline_age: float
    severity: float
    head_scale: float
    visit_months: tuple[int, ...]
    #: One weight per atrophied region (stem); all 1 without heterogeneity.
    region_weights: tuple[float, ...] = ()


def _draw_subject(
    config: SynthConfig, diagnosis: str, index: int, number: int, n_regions: int = 0
) -> _SubjectDraw:
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
    return _SubjectDraw(
        participant_id=f"sub-{profile.id_prefix}{number:04d}",
        diagnosis=diagnosis,
        sex=sex,
        baseline_age=round(age, 1),
        severity=severity,
        head_scale=head_scale,
        visit_months=profile.visit_months[:n_sessions],
        region_weights=weights,
    )


class _Synthesizer:
    """Holds the per-grid arrays so that each image costs one warp and a little noise."""

    def __init__(
        self,
        config: SynthConfig,
        template: np.ndarray,
        pattern: np.ndarray,
        region_patterns: list[np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.region_patterns = region_patterns or []
        self.grid = config.grid
        self.template = np.where(template < ZERO_BELOW, 0.0, template).astype(np.float32)
        self.pattern = pattern
        self.voxel_mm = float(np.mean(self.grid.voxel_size))
        shape = self.grid.shape
        self.index = np.indices(shape, dtype=np.float32)
        # Centre of scaling: world (0, -18, 18) mm, roughly the brain's centre in MNI space.
        centre = np.linalg.solve(self.grid.affine, np.array([0.0, -18.0, 18.0, 1.0]))[:3]
        self.centre = centre.astype(np.float32).reshape(3, 1, 1, 1)

    def subject_field(self, rng: np.random.Generator) -> np.ndarray:
        sd = self.config.deformation_mm / math.sqrt(3) / self.voxel_mm
        spacing = self.config.deformation_scale_mm / self.voxel_mm
        return np.stack([smooth_field(rng, self.grid.shape, spacing, sd) for _ in range(3)])

    def image(
        self,
        subject: _SubjectDraw,
        subject_field: np.ndarray,
        months: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, float]:
        cfg = self.config
        years = months / 12.0
        severity = subject.severity + (
            cfg.progression_per_year * years if subject.diagnosis == "AD" else 0.0
        )
        pattern = self.pattern
        if subject.region_weights:
            pattern = sum(
                w * p for w, p in zip(subject.region_weights, self.region_patterns, strict=True)
            )
        loss = np.minimum(cfg.atrophy_strength * severity * pattern, 0.95)
        gm = self.template * (1.0 - loss)
        age = subject.baseline_age + years
        gm = np.power(gm, max(0.5, 1.0 + cfg.age_effect_per_year * (age - 70.0)), dtype=np.float32)

        field = subject_field
        if cfg.session_jitter_mm > 0:
            sd = cfg.session_jitter_mm / math.sqrt(3) / self.voxel_mm
            spacing = cfg.deformation_scale_mm / self.voxel_mm
            field = field + np.stack(
                [smooth_field(rng, self.grid.shape, spacing, sd) for _ in range(3)]
            )
        coords = self.centre + (self.index - self.centre) / subject.head_scale + field
        gm = ndimage.map_coordinates(
            gm, coords, order=1, mode="constant", cval=0.0, prefilter=False
        )

        profile = cfg.profile
        if profile.site_fwhm_mm > 0:
            sigma = profile.site_fwhm_mm / 2.3548 / np.asarray(self.grid.voxel_size)
            gm = ndimage.gaussian_filter(gm, sigma=sigma)
        if profile.site_gamma != 1.0:
            gm = np.power(np.clip(gm, 0.0, 1.0), profile.site_gamma)
        if cfg.noise_sd > 0:
            noise = ndimage.gaussian_filter(
                rng.standard_normal(self.grid.shape).astype(np.float32), 0.7
            )
            noise *= cfg.noise_sd / max(float(noise.std()), 1e-12)
            gm = gm + noise * (gm > ZERO_BELOW)
        gm = np.clip(gm, 0.0, 1.0)
        gm[gm < ZERO_BELOW] = 0.0
        return gm.astype(np.float32), severity


def inject_qc_failure(
    gm: np.ndarray, kind: str, rng: np.random.Generator, grid: Grid
) -> np.ndarray:
    """Corrupt a GM map the way failed segmentations look.

    ``low_max``: the whole map is scaled so that its maximum falls between 0.55 and 0.9.
    ``block``: non-brain tissue of the lower half of the field of view (neck, face) is
    segmented as GM, as a block of values between 0.5 and 0.9.
    """
    gm = gm.copy()
    if kind == "low_max":
        gm *= float(rng.uniform(0.55, 0.9)) / max(float(gm.max()), 1e-6)
    elif kind == "block":
        nz = grid.shape[2] // 2
        block = gm[:, :, :nz]
        fill = (0.5 + 0.4 * rng.random(block.shape)).astype(np.float32)
        gm[:, :, :nz] = np.where(block < 0.05, fill, block)
    else:
        raise ParameterError(
            f"Unknown QC failure kind {kind!r}; expected one of {QC_FAILURE_KINDS}"
        )
    return gm


def generate_cohort(
    config: SynthConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> SynthResult:
    """Write a synthetic CAPS cohort, its participants TSV and its ground truth to ``out``.

    Deterministic for a given ``config`` (seed included). ``out`` must be absent or empty
    unless ``overwrite``; nothing is left under ``out`` if generation fails.
    """
    grid = config.grid
    atlas = load_aal2(grid)
    roi_names = resolve_atrophy_rois(config, atlas)
    pattern = atrophy_pattern(atlas, roi_names)
    regions = sorted({roi_stem(n) for n in roi_names})
    region_patterns = [
        atrophy_pattern(atlas, [n for n in roi_names if roi_stem(n) == r]) for r in regions
    ]
    synth = _Synthesizer(config, gm_template(grid), pattern, region_patterns)
    profile = config.profile

    subjects = [
        _draw_subject(config, diagnosis, index=i, number=i + 1, n_regions=len(regions))
        for i, diagnosis in enumerate(
            ["CN"] * config.subjects_per_class + ["AD"] * config.subjects_per_class
        )
    ]
    sessions = [(s, m) for s in subjects for m in s.visit_months]
    failure_rng = np.random.default_rng([config.seed, profile.seed_code, 1_000_000])
    failed = failure_rng.choice(len(sessions), size=config.qc_failures, replace=False)
    failure_of = {
        int(j): QC_FAILURE_KINDS[0] if k == 0 else QC_FAILURE_KINDS[1]
        for k, j in enumerate(sorted(failed))
    }

    rows, truth_rows = [], []
    with staged_output_dir(out, overwrite=overwrite) as stage:
        caps = stage / "caps"
        fields: dict[str, np.ndarray] = {}
        for j in track(
            range(len(sessions)),
            f"Synthesising {profile.name.upper()}-like cohort",
            enabled=progress,
        ):
            subject, months = sessions[j]
            index = subjects.index(subject)
            if subject.participant_id not in fields:
                fields.clear()
                fields[subject.participant_id] = synth.subject_field(
                    np.random.default_rng([config.seed, profile.seed_code, index, 1])
                )
            rng = np.random.default_rng([config.seed, profile.seed_code, index, 2, months])
            gm, severity = synth.image(subject, fields[subject.participant_id], months, rng)
            failure = failure_of.get(j, "none")
            if failure != "none":
                gm = inject_qc_failure(
                    gm,
                    failure,
                    np.random.default_rng([config.seed, profile.seed_code, index, 3, months]),
                    grid,
                )
            session_id = f"ses-M{months:03d}"
            save_volume(gm_map_path(caps, subject.participant_id, session_id), gm, grid)
            age = round(subject.baseline_age + months / 12.0, 1)
            rows.append(
                {
                    "participant_id": subject.participant_id,
                    "session_id": session_id,
                    "diagnosis": subject.diagnosis,
                    "age": age,
                    "sex": subject.sex,
                    "cohort": profile.name,
                }
            )
            truth_rows.append(
                {
                    "participant_id": subject.participant_id,
                    "session_id": session_id,
                    "diagnosis": subject.diagnosis,
                    "severity": round(severity, 4),
                    "qc_failure": failure,
                }
            )

        write_tsv(pd.DataFrame(rows), stage / "participants.tsv")
        truth = stage / "ground_truth"
        save_volume(truth / "atrophy_map.nii.gz", config.atrophy_strength * pattern, grid)
        write_tsv(atlas.rois[atlas.rois["roi_name"].isin(roi_names)], truth / "atrophy_rois.tsv")
        write_tsv(pd.DataFrame(truth_rows), truth / "sessions.tsv")
        if config.atrophy_heterogeneity > 0:
            write_tsv(
                pd.DataFrame(
                    [
                        {
                            "participant_id": s.participant_id,
                            **dict(zip(regions, s.region_weights, strict=True)),
                        }
                        for s in subjects
                        if s.region_weights
                    ]
                ),
                truth / "subject_atrophy.tsv",
            )
        record = {
            "neuromask_version": neuromask.__version__,
            "config": asdict(config),
            "atrophy_rois": roi_names,
            "grid": grid.to_dict(),
        }
        with atomic_path(truth / "synth.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2))

    out = Path(out)
    return SynthResult(
        out=out,
        caps=out / "caps",
        participants=out / "participants.tsv",
        ground_truth=out / "ground_truth",
        n_subjects=len(subjects),
        n_sessions=len(sessions),
        atrophy_rois=roi_names,
    )
