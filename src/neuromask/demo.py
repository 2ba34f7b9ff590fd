"""The demo: the whole method end to end on an embedded synthetic default.

``run_demo`` runs every study of the ``small`` preset (two synthetic 3 mm cohorts,
ADNI-like and AIBL-like, with injected segmentation failures; quality check and matched
split; CNN training over folds and runs; group masks on both cohorts; session masks; the
mask-hyperparameter grid), then writes the HTML report and summarises what the masks
found next to the ground truth. The demo folder is a study folder: an interrupted demo
resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neuromask.jobs.masks import UNFOOLED

DEFAULT_PRESET = "small"


@dataclass
class DemoResult:
    out: Path
    report: Path
    balanced_accuracy: pd.DataFrame
    #: per split: the five densest ROIs of the ADNI-like group mask, with densities
    top_rois: dict[int, list[tuple[str, float]]]
    truth_rois: list[str]
    session_similarity: pd.DataFrame | None
    seconds: float
    #: per split: neuromask localize's scores against the ground truth
    localization: dict[int, dict] = field(default_factory=dict)
    #: per split: mean P(AD) of the masked validation AD sessions
    p_ad_masked: dict[int, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"Report: {self.report}"]
        table = self.balanced_accuracy.set_index(self.balanced_accuracy["split"].astype(str))
        metrics = [c for c in table.columns if c != "split"]
        folds = len(table) - 2
        out.append(f"CNN balanced accuracy, mean ± SD over {folds} folds:")
        for m in metrics:
            out.append(f"  {m:<12} {table.loc['mean', m]:.3f} ± {table.loc['sd', m]:.3f}")
        truth = set(self.truth_rois)
        out.append(
            "Group masks (ADNI-like cohort), densest AAL2 ROIs"
            + (" (* = truly atrophied):" if truth else ":")
        )
        for split, rois in self.top_rois.items():
            names = ", ".join(f"{n}{'*' if n in truth else ''}" for n, _ in rois)
            score = self.localization.get(split)
            prefix = f"  split {split}"
            details = []
            if score:
                details.append(f"precision@5 {score['roi_precision_at_k']:.1f}")
            if split in self.p_ad_masked:
                details.append(f"P(AD) masked {self.p_ad_masked[split]:.2f}")
            prefix += f" ({', '.join(details)})" if details else ""
            out.append(f"{prefix}: {names}")
        if any(p >= UNFOOLED for p in self.p_ad_masked.values()):
            out.append(
                f"  A mask that leaves P(AD) at {UNFOOLED} or more did not find what its CNN "
                "needs: its shape then comes from the area and smoothness terms (a compact "
                "block), not from the CNN."
            )
        if truth:
            out.append(f"Ground truth (atrophied ROIs): {', '.join(self.truth_rois)}")
        if self.session_similarity is not None:
            roi = self.session_similarity.set_index("metric").loc["roi_similarity"]
            out.append(
                f"Session masks: ROI similarity within subjects {roi['intra_subject']:.3f}, "
                f"between subjects {roi['inter_subject']:.3f}"
            )
        out.append(f"Finished in {self.seconds / 60:.1f} min; every output is in {self.out}")
        return out


def run_demo(
    out: str | os.PathLike[str] = "neuromask-demo",
    *,
    config: str | os.PathLike[str] = DEFAULT_PRESET,
    truth: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> DemoResult:
    """Run every study of ``config`` (a preset name or a study TOML) into ``out``, write
    the report, and return the figures the demo prints."""
    from neuromask.io.layout import StudyLayout, TruthLayout
    from neuromask.metrics.localization import read_truth_rois
    from neuromask.progress import console
    from neuromask.report.study_report import build_report
    from neuromask.studies.config import load_study_config
    from neuromask.studies.run import claim_study_dir, run_study
    from neuromask.studies.tables import localise_group_masks

    tic = time.perf_counter()
    out = Path(out)
    study_config, text = load_study_config(config)
    # A fresh folder, or a demo folder to resume; anything else is refused.
    claim_study_dir(
        out,
        study_config,
        text,
        overwrite=overwrite,
        restart=overwrite,
        allow_unmarked=False,
        what="demo",
    )
    if progress:
        console.rule("neuromask demo: studies (data, CNNs, masks)")
    results = run_study(
        "all", study_config, out, config_text=text, device=device, progress=progress
    )
    if progress:
        console.rule("neuromask demo: report")
    report = build_report(out, truth=truth)

    tops = results["group"]["top_rois"]
    truth_dir = TruthLayout(Path(truth)) if truth else StudyLayout(out).truth
    truth_rois = read_truth_rois(truth_dir.root) if truth_dir.exists() else []
    found = localise_group_masks(tops[tops["cohort"] == "adni"], truth_rois, k=5)
    return DemoResult(
        out=out,
        report=report.path,
        balanced_accuracy=results["cnn"]["balanced_accuracy"],
        top_rois={f["split"]: f["densest"] for f in found},
        truth_rois=truth_rois,
        session_similarity=results["session"]["similarity"],
        seconds=time.perf_counter() - tic,
        localization={f["split"]: f["scores"].to_dict() for f in found if f["scores"]},
        p_ad_masked={
            int(r.split): float(r.p_ad_masked) for r in tops[tops["cohort"] == "adni"].itertuples()
        },
    )
