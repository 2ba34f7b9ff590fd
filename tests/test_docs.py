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
from neuromask.cli.main import all_commands

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
    commands = all_commands()
    unknown = used - set(commands)
    assert not unknown, f"{page} mentions commands that do not exist: {unknown}"
    for group, sub in re.findall(r"neuromask (mask|atlas) ([a-z][a-z-]+)", " ".join(code)):
        known = commands[group].commands  # type: ignore[attr-defined]
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


def test_readme_mask_settings_table_gives_the_defaults():
    """The README's table of mask settings ("The settings, all in `--config` TOML files
    and `MaskConfig`") gives each setting's default as ``MaskConfig`` has it."""
    import dataclasses
    import json

    from neuromask.explain import MaskConfig

    readme = (ROOT / "README.md").read_text()
    start = readme.index("| setting | default | what it does |", readme.index("MaskConfig`:"))
    table = readme[start : readme.index("\n\n", start)].splitlines()[2:]
    defaults = {f.name: getattr(MaskConfig(), f.name) for f in dataclasses.fields(MaskConfig)}
    rows = [re.match(r"\| `(\w+)` \| ([^|]+?) \|", line) for line in table]
    assert all(rows), "every row names a setting and its default"
    seen = set()
    for row in rows:
        name, text = row.group(1), row.group(2).strip("` ")
        assert name in defaults, f"README table: {name} is not a MaskConfig setting"
        default = defaults[name]
        if isinstance(default, tuple):
            value: object = tuple(json.loads(text))
        elif isinstance(default, str):
            value = text
        else:
            value = type(default)(float(text))
        assert value == default, f"README table: {name} = {text}, MaskConfig: {default}"
        seen.add(name)
    assert {"area", "max_epochs", "larger_areas", "larger_area_epochs"} <= seen
