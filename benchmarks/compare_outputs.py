"""Compare two output folders file by file (for example two demo folders, made before and
after a change that must not change results).

    python benchmarks/compare_outputs.py BEFORE AFTER

Each file is one of:

- identical bytes;
- identical bytes once the folder's own absolute path is replaced (run records such as
  ``config.json`` and ``mask_job.json`` name the folder they were written into);
- identical without its wall-clock column (``training.tsv``'s ``time_s``);
- DIFFERENT, listed by path.

``cache/`` is skipped (image caches keyed by the input files). The job engine's
``jobs.db`` and the report's ``report.html`` hold dates, so they always differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

WALL_CLOCK_COLUMNS = ("time_s",)


def compare(a: Path, b: Path, rel: Path) -> str:
    pa, pb = a / rel, b / rel
    if not pa.exists() or not pb.exists():
        return "only in " + ("after" if not pa.exists() else "before")
    x, y = pa.read_bytes(), pb.read_bytes()
    if x == y:
        return "bytes"
    if x == y.replace(str(b).encode(), str(a).encode()):
        return "bytes, with the folder's own path"
    if rel.suffix == ".tsv":
        ta, tb = pd.read_csv(pa, sep="\t"), pd.read_csv(pb, sep="\t")
        drop = [c for c in WALL_CLOCK_COLUMNS if c in ta]
        if drop and ta.drop(columns=drop).equals(tb.drop(columns=drop)):
            return "bytes, without the wall-clock column"
    return "DIFFERENT"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    a, b = args.before.resolve(), args.after.resolve()
    files = sorted(
        {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
        | {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    )
    counts: dict[str, int] = {}
    different = []
    for rel in files:
        if rel.parts[0] == "cache":
            continue
        kind = compare(a, b, rel)
        counts[kind] = counts.get(kind, 0) + 1
        if kind != "bytes" and not kind.startswith("bytes,"):
            different.append(f"{kind}: {rel}")
    for kind, n in sorted(counts.items()):
        print(f"{n:5d}  {kind}")
    for line in different:
        print(line)


if __name__ == "__main__":
    main()
