"""Group masks in float32 and under bfloat16 autocast, side by side in one run: how far
the mixed-precision mask drifts, and what it saves.

Usage: python benchmarks/mask_precision.py MODEL OUT CAPS TSV [--split K] [--device cpu]

MODEL is a neuromask run folder or a ClinicaDL MAPS (with --split). Both masks use the
default settings and the same seed. Printed: the ROI cosine similarity of the two masks
(the default atlas), the correlation of their 1 - m over the brain, the five densest
ROIs of each, the masked validation P(AD), the wall time and its ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from neuromask.explain import mask_preset
from neuromask.io.atlas import default_atlas
from neuromask.io.nifti import load_volume
from neuromask.jobs.masks import group_mask_job
from neuromask.metrics.roi import top_rois
from neuromask.metrics.similarity import cosine_matrix, roi_vectors
from neuromask.train.model_folder import model_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("model", "out", "caps", "tsv"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--split", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    model = model_folder(args.model, args.split)
    masks, seconds, p_ad = {}, {}, {}
    for precision in ("float32", "bfloat16"):
        config = dataclasses.replace(mask_preset("group"), precision=precision)
        start = time.perf_counter()
        result = group_mask_job(
            model, args.caps, args.tsv, args.out / precision, config,
            device=args.device, progress=False,
        )  # fmt: skip
        seconds[precision] = time.perf_counter() - start
        masks[precision], grid = load_volume(args.out / precision / "mask.nii.gz")
        p_ad[precision] = result.validation_p_ad
    atlas = default_atlas(grid)
    a, b = masks["float32"], masks["bfloat16"]
    cosine = cosine_matrix(roi_vectors([a, b], atlas))[0, 1]
    brain = atlas.labels > 0
    correlation = np.corrcoef(1 - a[brain], 1 - b[brain])[0, 1]
    for precision, mask in masks.items():
        names = ", ".join(top_rois(mask, atlas, 5)["roi_name"])
        print(f"{precision:>8}: {seconds[precision]:6.1f} s, validation P(AD) masked "
              f"{p_ad[precision]:.3f}, top 5: {names}")  # fmt: skip
    print(f"ROI cosine similarity float32 vs bfloat16: {cosine:.4f}")
    print(f"correlation of 1 - m over the atlas's voxels: {correlation:.4f}")
    print(f"time bfloat16 / float32: {seconds['bfloat16'] / seconds['float32']:.2f}")


if __name__ == "__main__":
    main()
