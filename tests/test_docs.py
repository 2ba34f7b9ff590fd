"""Docs match the code: docstring examples run, the README names real commands, the
README's test command is the one CI runs, and the code passes the linter."""

import doctest
import importlib
import importlib.util
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import neuromask
from neuromask.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples_run():
    failures = []
    for info in pkgutil.walk_packages(neuromask.__path__, prefix="neuromask."):
        if info.name.endswith("__main__"):
            continue
        origin = importlib.util.find_spec(info.name).origin
        if "from neuromask._moved import forward" in Path(origin).read_text().splitlines():
            continue  # an old import path that forwards to the new module
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        if result.failed:
            failures.append(info.name)
    assert not failures


@pytest.mark.parametrize("page", ["README.md", "docs/clinicadl.md"])
def test_readme_commands_exist(page):
    readme = (ROOT / page).read_text()
    code = re.findall(r"```.*?```", readme, flags=re.DOTALL) + re.findall(r"`[^`\n]+`", readme)
    # a command starts a line of a code block or an inline code span
    command = re.compile(r"(?:^|`)\s*neuromask ([a-z][a-z-]+)", flags=re.MULTILINE)
    used = {m for block in code for m in command.findall(block)}
    assert used, f"{page} shows no neuromask command"
    unknown = used - set(cli.commands)
    assert not unknown, f"{page} mentions commands that do not exist: {unknown}"
    for group, sub in re.findall(r"neuromask (mask|atlas) ([a-z][a-z-]+)", " ".join(code)):
        known = cli.commands[group].commands  # type: ignore[attr-defined]
        assert sub in known, f"{page}: neuromask {group} {sub} does not exist"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme
    assert "<!-- demo-command -->" in readme
    assert "test-command" in ci and "README.md" in ci


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (ROOT / ".venv/bin/ruff").exists(),
    reason="ruff is not installed",
)
def test_code_passes_the_linter():
    ruff = shutil.which("ruff") or str(ROOT / ".venv/bin/ruff")
    proc = subprocess.run([ruff, "check", "src", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
