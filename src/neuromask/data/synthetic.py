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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

import neuromask
from neuromask.data.atrophy import (  # noqa: F401  (old import paths)
    atrophy_pattern,
    blob_patterns,
    resolve_atrophy_rois,
    rois_of_pattern,
)
from neuromask.data.cohorts import COHORTS, CohortProfile  # noqa: F401
from neuromask.data.corruption import (  # noqa: F401  (old import paths)
    QC_FAILURE_KINDS,
    inject_qc_failure,
    smooth_field,
)
from neuromask.data.subjects import SubjectDraw, draw_subject
from neuromask.data.synth_config import SynthConfig
from neuromask.io.atlas import Atlas, load_aal2, roi_stem
from neuromask.io.atomic import atomic_path, staged_output_dir
from neuromask.io.caps import gm_map_path
from neuromask.io.layout import SYNTH_RECORD, CohortLayout, TruthLayout
from neuromask.io.nifti import save_volume
from neuromask.io.participants import write_tsv
from neuromask.io.template import gm_template
from neuromask.progress import track

#: GM values below this are set to 0, as in SPM segmentations.
ZERO_BELOW = 0.01


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
        subject: SubjectDraw,
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
            pattern = sum(  # type: ignore[assignment]
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


def generate_cohort(
    config: SynthConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> SynthResult:
    """Write a synthetic CAPS cohort, its participants TSV and its ground truth to ``out``.

    Deterministic for a given ``config`` (seed included). ``out`` must be absent or empty
    unless ``overwrite``; nothing is left under ``out`` if generation fails.
    """
    grid = config.grid
    atlas = load_aal2(grid)
    template = gm_template(grid)
    pattern, region_patterns, roi_names, regions = _disease(config, atlas, template)
    synth = _Synthesizer(config, template, pattern, region_patterns)
    profile = config.profile

    subjects = [
        draw_subject(config, diagnosis, index=i, number=i + 1, n_regions=len(regions))
        for i, diagnosis in enumerate(
            ["CN"] * config.subjects_per_class + ["AD"] * config.subjects_per_class
        )
    ]
    sessions = [(i, s, m) for i, s in enumerate(subjects) for m in s.visit_months]
    failure_of = _failures(config, len(sessions))

    rows, truth_rows = [], []
    with staged_output_dir(out, overwrite, marker=SYNTH_RECORD) as stage:
        caps = CohortLayout(stage).caps
        fields: dict[str, np.ndarray] = {}
        for j in track(
            range(len(sessions)),
            f"Synthesising {profile.name.upper()}-like cohort",
            enabled=progress,
        ):
            index, subject, months = sessions[j]
            failure = failure_of.get(j, "none")
            gm, severity = _session_image(synth, fields, index, subject, months, failure)
            session_id = f"ses-M{months:03d}"
            save_volume(gm_map_path(caps, subject.participant_id, session_id), gm, grid)
            rows.append(_participant_row(subject, session_id, months, profile.name))
            truth_rows.append(
                {
                    "participant_id": subject.participant_id,
                    "session_id": session_id,
                    "diagnosis": subject.diagnosis,
                    "severity": round(severity, 4),
                    "qc_failure": failure,
                }
            )

        write_tsv(pd.DataFrame(rows), CohortLayout(stage).participants)
        _write_truth(
            TruthLayout(stage / "ground_truth"),
            config,
            pattern,
            atlas,
            roi_names,
            regions,
            subjects,
            pd.DataFrame(truth_rows),
        )

    layout = CohortLayout(Path(out))
    return SynthResult(
        out=layout.root,
        caps=layout.caps,
        participants=layout.participants,
        ground_truth=layout.truth.root,
        n_subjects=len(subjects),
        n_sessions=len(sessions),
        atrophy_rois=roi_names,
    )


def _disease(
    config: SynthConfig, atlas: Atlas, template: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], list[str], list[str]]:
    """Where AD subjects lose GM: the pattern, one pattern per region (heterogeneous
    subjects weight them), the atrophied ROIs and the regions' names."""
    if config.atrophy_blobs:
        pattern, region_patterns = blob_patterns(config, atlas, template)
        regions = [f"blob_{i + 1}" for i in range(len(region_patterns))]
        return pattern, region_patterns, rois_of_pattern(pattern, atlas), regions
    roi_names = resolve_atrophy_rois(config, atlas)
    regions = sorted({roi_stem(n) for n in roi_names})
    region_patterns = [
        atrophy_pattern(atlas, [n for n in roi_names if roi_stem(n) == r]) for r in regions
    ]
    return atrophy_pattern(atlas, roi_names), region_patterns, roi_names, regions


def _session_image(
    synth: _Synthesizer,
    fields: dict[str, np.ndarray],
    index: int,
    subject: SubjectDraw,
    months: int,
    failure: str,
) -> tuple[np.ndarray, float]:
    """The GM map of one session and its atrophy severity; ``fields`` keeps the current
    subject's deformation field between its sessions."""
    config = synth.config
    seed = [config.seed, config.profile.seed_code, index]
    if subject.participant_id not in fields:
        fields.clear()
        fields[subject.participant_id] = synth.subject_field(np.random.default_rng([*seed, 1]))
    rng = np.random.default_rng([*seed, 2, months])
    gm, severity = synth.image(subject, fields[subject.participant_id], months, rng)
    if failure != "none":
        gm = inject_qc_failure(gm, failure, np.random.default_rng([*seed, 3, months]), config.grid)
    return gm, severity


def _failures(config: SynthConfig, n_sessions: int) -> dict[int, str]:
    """The sessions to corrupt (by position) and how: the first a block, the others a
    low maximum."""
    rng = np.random.default_rng([config.seed, config.profile.seed_code, 1_000_000])
    failed = rng.choice(n_sessions, size=config.qc_failures, replace=False)
    return {
        int(j): QC_FAILURE_KINDS[0] if k == 0 else QC_FAILURE_KINDS[1]
        for k, j in enumerate(sorted(failed))
    }


def _participant_row(
    subject: SubjectDraw, session_id: str, months: int, cohort: str
) -> dict[str, object]:
    """A session's row of ``participants.tsv``."""
    return {
        "participant_id": subject.participant_id,
        "session_id": session_id,
        "diagnosis": subject.diagnosis,
        "age": round(subject.baseline_age + months / 12.0, 1),
        "sex": subject.sex,
        "cohort": cohort,
    }


def _write_truth(
    truth: TruthLayout,
    config: SynthConfig,
    pattern: np.ndarray,
    atlas: Atlas,
    roi_names: list[str],
    regions: list[str],
    subjects: list[SubjectDraw],
    sessions: pd.DataFrame,
) -> None:
    """The ground truth: atrophy map and ROIs, per-session truth, per-subject weights
    (heterogeneous atrophy) and every setting."""
    grid = config.grid
    save_volume(truth.atrophy_map, config.atrophy_strength * pattern, grid)
    write_tsv(atlas.rois[atlas.rois["roi_name"].isin(roi_names)], truth.atrophy_rois)
    write_tsv(sessions, truth.sessions)
    if config.atrophy_heterogeneity > 0:
        weights = [
            {
                "participant_id": s.participant_id,
                **dict(zip(regions, s.region_weights, strict=True)),
            }
            for s in subjects
            if s.region_weights
        ]
        write_tsv(pd.DataFrame(weights), truth.subject_atrophy)
    record = {
        "neuromask_version": neuromask.__version__,
        "config": asdict(config),
        "atrophy_rois": roi_names,
        "grid": grid.to_dict(),
    }
    with atomic_path(truth.record) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
