"""Loading GM maps: reading every NIfTI vs reopening the on-disk cache, side by side.

Usage: python benchmarks/bench_loading.py [--voxel-size 1.5] [--subjects-per-class 10]

Synthesises a small cohort, then times, in one run:
  1. load_gm_maps without a cache (decompress and check every file);
  2. the first load with a cache folder (the same, plus writing the .npy);
  3. a second load with the cache (memory-mapped), including a full read of the array;
  4. within 3, the hash of every file's content that names the cache (its key).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from neuromask.data.dataset import _cache_key, gm_paths, load_gm_maps
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.io.participants import read_participants


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-size", type=float, default=1.5)
    parser.add_argument("--subjects-per-class", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = SynthConfig(
            voxel_size=args.voxel_size, subjects_per_class=args.subjects_per_class, sessions=(1, 1)
        )
        cohort = generate_cohort(config, tmp / "synth", progress=False)
        sessions = read_participants(cohort.participants)
        t_plain, plain = timed(lambda: load_gm_maps(cohort.caps, sessions, progress=False))
        t_build, _ = timed(
            lambda: load_gm_maps(cohort.caps, sessions, cache_dir=tmp / "c", progress=False)
        )

        def reopen():
            data = load_gm_maps(cohort.caps, sessions, cache_dir=tmp / "c", progress=False)
            assert data.from_cache
            return float(np.asarray(data.images).sum())  # touch every voxel

        t_cached, total = timed(reopen)
        assert np.isclose(total, float(plain.images.sum()), rtol=1e-5)
        paths = gm_paths(cohort.caps, sessions, None)
        t_key, _ = timed(lambda: _cache_key(paths, "float32"))
    n, grid = len(sessions), plain.grid
    print(f"machine: {platform.processor() or platform.machine()}, {n} images on {grid}")
    print(f"read every NIfTI       : {t_plain:7.3f} s  ({n / t_plain:7.1f} images/s)")
    print(f"first load, cache built: {t_build:7.3f} s")
    print(f"reopen the cache       : {t_cached:7.3f} s  ({n / t_cached:7.1f} images/s)")
    print(f"ratio read / reopen    : {t_plain / t_cached:7.1f}x")
    print(f"of which hashing files : {t_key:7.3f} s  ({t_key / t_plain:.1%} of reading them)")


if __name__ == "__main__":
    main()
