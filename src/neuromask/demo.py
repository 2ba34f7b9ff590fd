"""The demo: the pipeline end to end on an embedded synthetic default.

Two small cohorts at 3 mm are synthesised (ADNI-like for training and testing, AIBL-like
as the independent cohort), both with injected segmentation failures; the quality check
removes them, and the ADNI-like cohort is split into a matched test set and folds.
Later stages (training, masks, studies, report) join as they land.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neuromask.data.split import SplitConfig, make_splits, write_splits
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.io.atomic import check_output_dir
from neuromask.io.participants import read_participants
from neuromask.prepare import quality_check_folder


@dataclass(frozen=True)
class DemoConfig:
    """The embedded default: sizes chosen to run in minutes on 2 CPU cores."""

    adni: SynthConfig = field(
        default_factory=lambda: SynthConfig(
            voxel_size=3.0,
            subjects_per_class=60,
            sessions=(1, 3),
            cohort="adni",
            qc_failures=3,
            seed=0,
        )
    )
    aibl: SynthConfig = field(
        default_factory=lambda: SynthConfig(
            voxel_size=3.0,
            subjects_per_class=30,
            sessions=(1, 2),
            cohort="aibl",
            qc_failures=2,
            seed=1,
        )
    )
    split: SplitConfig = field(
        default_factory=lambda: SplitConfig(test_subjects_per_class=15, folds=5, seed=2)
    )


@dataclass
class DemoResult:
    out: Path
    qc: dict[str, pd.DataFrame]
    split_dir: Path
    split_summary: pd.DataFrame
    atrophy_rois: list[str]

    def lines(self) -> list[str]:
        out = [f"Outputs in {self.out}/"]
        for cohort, table in self.qc.items():
            rejected = table[~table["qc_pass"]]
            out.append(
                f"  {cohort}: {len(table)} sessions, {len(rejected)} rejected by the quality check "
                f"-> {self.out / cohort / 'qc' / 'qc.png'}"
            )
        test = self.split_summary[self.split_summary["set"] == "test"]
        out.append(
            f"  split: {int(test['n_subjects'].sum())} matched test subjects, "
            f"{self.split_summary['set'].str.endswith('validation').sum() // 2} folds "
            f"-> {self.split_dir}"
        )
        out.append(f"  ground-truth atrophied ROIs: {', '.join(self.atrophy_rois)}")
        return out


def run_demo(
    config: DemoConfig,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Run the demo into ``out`` (absent or empty unless ``overwrite``)."""
    out = check_output_dir(out, overwrite)
    qc_tables = {}
    atrophy_rois: list[str] = []
    for name, synth_config in (("adni", config.adni), ("aibl", config.aibl)):
        cohort = generate_cohort(
            synth_config, out / name / "synth", overwrite=True, progress=progress
        )
        atrophy_rois = atrophy_rois or cohort.atrophy_rois
        qc = quality_check_folder(
            cohort.caps, cohort.participants, out / name / "qc", overwrite=True, progress=progress
        )
        qc_tables[name] = qc.table
    split = make_splits(read_participants(out / "adni" / "qc" / "pass.tsv"), config.split)
    split_dir = write_splits(split, out / "adni" / "split", overwrite=True)
    return DemoResult(out, qc_tables, split_dir, split.summary(), atrophy_rois)
