"""benchmarks/gpu_check.sh runs on the CPU in its smoke mode: the script a GPU machine
runs is exercised by every test run, its autocast paths included (CPU bfloat16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_on_the_cpu(tmp_path):
    out = tmp_path / "check.tsv"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--smoke",
         "--out", str(out)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "neuromask GPU check on CPU" in done.stdout
    table = pd.read_csv(out, sep="\t")
    assert set(table["check"]) == {
        "train paper", "train conv5_fc3", "group-mask step / floor", "session masks",
    }  # fmt: skip
    assert set(table.loc[table["check"] == "train paper", "setting"]) == {"fp32", "bf16 AMP"}
    assert (table["value"] > 0).all()
