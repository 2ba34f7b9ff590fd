"""The type checker finds no error in the package (settings in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_finds_no_error(monkeypatch):
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = api.run(
        ["--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache")]
    )
    assert status == 0, stdout + stderr
