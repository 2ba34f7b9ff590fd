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


def test_the_command_tunes_before_torch_is_imported():
    """The command line tunes the allocator when it is imported, before torch is (a
    training epoch at 1.5 mm took 1.04 times as long when tuned after torch's import,
    benchmarks/full_grid_cpu.py)."""
    code = (
        "import sys\n"
        "import neuromask.runtime as runtime\n"
        "calls = []\n"
        "tune = runtime.tune_allocator\n"
        "runtime.tune_allocator = lambda: calls.append('torch' in sys.modules) or tune()\n"
        "import neuromask.cli.main as cli\n"
        "before = 'torch' in sys.modules\n"
        "cli.all_commands()\n"
        "print(calls, before, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # tuned once at import; torch comes only with the subcommands, which load on first use
    assert out.stdout.split() == ["[False]", "False", "True"]


def test_the_heap_is_never_trimmed(monkeypatch):
    """A forward pass of 8 masked images on the 1.5 mm grid frees more than 1 GiB at once;
    with the heap trimmed above 1 GiB (before round 19) every such pass page-faulted its
    memory again. The tuning now turns trimming off (mallopt's -1)."""
    import neuromask.runtime as runtime

    calls = []

    def mallopt(option, value):
        calls.append((option, value))
        return 1

    monkeypatch.setattr(runtime, "_glibc", lambda name: mallopt if name == "mallopt" else None)
    monkeypatch.delenv("NEUROMASK_ALLOCATOR", raising=False)
    assert runtime.tune_allocator()
    assert calls == [(runtime.M_MMAP_MAX, 0), (runtime.M_TRIM_THRESHOLD, -1)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_takes_the_setting_and_keeps_a_freed_block():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = (
        "import os, torch\n"
        "from neuromask.runtime import tune_allocator\n"
        "assert tune_allocator()\n"
        "x = torch.ones(300_000_000)\n"  # 1.2 GB, on the heap
        "del x\n"
        "print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) > 1.1e9
