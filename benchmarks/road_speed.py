"""ROAD's imputation on the 1.5 mm grid: one system per map against one per image.

Usage: python benchmarks/road_speed.py [--images 6]

Six images on the Clinica grid (121 x 145 x 121): the GM template, each with its own
smooth noise. Three relevance maps of the shapes the suite's methods draw: `regions` (a
smooth random field, as masks and occlusion give), `cubes` (one value per 16-voxel
block, as occlusion's windows) and `scattered` (white noise, as gradients give). For the
top 5 % and 20 % of the brain, side by side in one run:

- `direct, per image`: the imputation as it was until round 12, the system built again
  for each image (with today's code, which also checks each removed piece for a kept
  neighbour) and solved by SuperLU (`scipy.sparse.linalg.spsolve`);
- `direct, one factorisation`: the system built once, factorised once by SuperLU
  (`scipy.sparse.linalg.splu`), and each image solved with the factors;
- `CG, one system`: `neuromask.metrics.imputation.neighbour_imputations`, the system
  built once and solved by Jacobi-preconditioned conjugate gradients for each image.

Prints the seconds of each, their ratio, and the largest difference between the two
imputations. Both include building the systems. Both solvers run on one core (SciPy's).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse.linalg import splu, spsolve

from neuromask.io.grid import clinica_grid
from neuromask.io.template import gm_template
from neuromask.metrics.faithfulness import ranked_brain_voxels
from neuromask.metrics.imputation import LaplaceSystem, neighbour_imputations


def maps(shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    blocks = rng.random(tuple(-(-s // 16) for s in shape))
    cubes = np.kron(blocks, np.ones((16, 16, 16)))[: shape[0], : shape[1], : shape[2]]
    return {
        "regions": ndimage.gaussian_filter(rng.standard_normal(shape), 4.0),
        "cubes": cubes + 1e-6 * rng.random(shape),
        "scattered": rng.random(shape),
    }


def direct_per_image(images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    out = images.reshape(images.shape[0], -1).copy()
    for i in range(images.shape[0]):
        system = LaplaceSystem.of(removed)  # built again for each image, as before
        rhs = system.boundary @ images[i].ravel()
        out[i, system.unknown] = spsolve(system.matrix.tocsc(), rhs)
    return out.reshape(images.shape)


def direct_one_system(images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    out = images.reshape(images.shape[0], -1).copy()
    system = LaplaceSystem.of(removed)
    factors = splu(system.matrix.tocsc())
    rhs = system.boundary @ images.reshape(images.shape[0], -1).T
    out[:, system.unknown] = factors.solve(rhs).T
    return out.reshape(images.shape)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * table.shape[1]]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    template = gm_template(clinica_grid(1.5)).astype(np.float64)
    brain = template > 0.05
    images = np.stack(
        [
            np.clip(
                template + ndimage.gaussian_filter(rng.standard_normal(brain.shape), 2) * 0.2, 0, 1
            )
            for _ in range(args.images)
        ]
    )
    rows = []
    for name, relevance in maps(brain.shape, rng).items():
        order = ranked_brain_voxels(relevance, brain)
        for fraction in (0.05, 0.2):
            removed = np.zeros(brain.size, dtype=bool)
            removed[order[: round(fraction * order.size)]] = True
            removed = removed.reshape(brain.shape)
            tic = time.perf_counter()
            before = direct_per_image(images, removed)
            direct = time.perf_counter() - tic
            tic = time.perf_counter()
            factored = direct_one_system(images, removed)
            once = time.perf_counter() - tic
            tic = time.perf_counter()
            after = neighbour_imputations(images, removed)
            batched = time.perf_counter() - tic
            rows.append(
                {
                    "map": name,
                    "removed": f"{fraction:.0%}",
                    "voxels": int(removed.sum()),
                    "direct, per image (s)": round(direct, 2),
                    "direct, one factorisation (s)": round(once, 2),
                    "CG, one system (s)": round(batched, 2),
                    "CG / direct per image": round(batched / direct, 3),
                    "CG / one factorisation": round(batched / once, 3),
                    "largest difference": f"{np.abs(after - before).max():.1e}",
                    "(one factorisation)": f"{np.abs(factored - before).max():.1e}",
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    print()
    print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
