"""The allocator setting that the command applies at start."""

import os
import subprocess
import sys

import pytest

CODE = "from neuromask.runtime import tune_allocator; print(tune_allocator())"


def run(env_value):
    env = {**os.environ, "NEUROMASK_ALLOCATOR": env_value}
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_applies_on_glibc_and_can_be_turned_off():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert run("") == "True"
    assert run("default") == "False"


def test_the_command_applies_it(monkeypatch):
    from neuromask.cli import main as cli_main

    called = []
    monkeypatch.setattr("neuromask.runtime.tune_allocator", lambda: called.append(1))
    monkeypatch.setattr(cli_main, "cli", lambda prog_name: None)
    cli_main.main()
    assert called == [1]
