"""How long the ``neuromask`` command takes to answer before it does any work.

Usage: python benchmarks/cli_startup.py [--repeats 5]

Each call runs in a fresh interpreter, as a user's shell runs it, side by side in one
run:

- `neuromask --version` and `neuromask --help`: since round 24 the subcommands load on
  first use, so these import click and nothing heavy;
- `neuromask synth --help` and `neuromask mask group --help`: these load their module,
  which imports torch, nilearn and the rest, as every command that does work must.

Prints the median wall time of each and its ratio to `neuromask synth --help` (what
`neuromask --help` cost before round 24, when every subcommand was loaded at start-up).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CALLS = {
    "neuromask --version": ["--version"],
    "neuromask --help": ["--help"],
    "neuromask synth --help": ["synth", "--help"],
    "neuromask mask group --help": ["mask", "group", "--help"],
}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "neuromask", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    seconds(["synth", "--help"])  # warm the file cache once, for every call alike
    times: dict[str, list[float]] = {name: [] for name in CALLS}
    for _ in range(repeats):  # interleaved, so that a busy moment hits every call
        for name, args in CALLS.items():
            times[name].append(seconds(args))
    medians = {name: statistics.median(values) for name, values in times.items()}
    loaded = medians["neuromask synth --help"]
    print(f"| call | median of {repeats} (s) | ratio to `synth --help` |")
    print("|---|---|---|")
    for name, median in medians.items():
        print(f"| `{name}` | {median:.2f} | {median / loaded:.3f} |")


if __name__ == "__main__":
    main()
