"""neuromask's group mask against the baseline attribution methods, like for like, with
the model-randomisation and shuffled-label checks: the README's table.

Usage: python benchmarks/sanity_table.py LOC_OUT SANITY_OUT [--images 6]

LOC_OUT is the folder of `benchmarks/mask_localisation.py` (its seed-5 cohort and CNN).
Runs `neuromask sanity` on split 0's CNN with the defaults (every method, the whole
cascade, the shuffled-label CNN) into SANITY_OUT, which resumes, and prints the table
as Markdown. Times and memory are those of each method on the trained CNN, measured in
this run, with the allocator tuned as the `neuromask` command tunes it; run it
alone on the machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuromask.jobs.sanity import SanityConfig, run_sanity
from neuromask.runtime import tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loc_out", type=Path)
    parser.add_argument("sanity_out", type=Path)
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    tune_allocator()  # as `neuromask sanity` does
    result = run_sanity(
        args.loc_out / "models" / "split-0" / "run-0",
        args.sanity_out,
        truth=args.loc_out / "synth" / "ground_truth",
        config=SanityConfig(images=args.images),
    )
    t = result.table
    print(
        "| method | precision@5 | recall@5 | voxel AUC | mass | inter-subject sim. "
        "| randomised sim. (Spearman) | shuffled sim. (Spearman) | passes | time | memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in t.itertuples(index=False):
        random = "empty map" if r.randomised_map_empty else f"{r.similarity_randomised:.3f}"
        print(
            f"| {r.method} | {r.roi_precision_at_k:.1f} | {r.roi_recall_at_k:.2f} "
            f"| {r.voxel_auc:.3f} | {r.mass_accuracy:.3f} | {r.inter_subject_similarity:.3f} "
            f"| {random} ({r.spearman_randomised:.2f}) "
            f"| {r.similarity_shuffled:.3f} ({r.spearman_shuffled:.2f}) "
            f"| {'yes' if r.passes_randomisation else 'no'} | {r.seconds:.1f} s "
            f"| {r.peak_memory_mb:.0f} MB |"
        )
    print(result.settings.get("shuffled_cnn"))


if __name__ == "__main__":
    main()
