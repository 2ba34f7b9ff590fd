"""The command line: help texts, and one clear error per bad input (exit 1, no traceback,
no partial output)."""

import gzip
import shutil
import subprocess
import sys

import click
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import SUMMARIES, all_commands, cli
from neuromask.io.caps import gm_map_path
from neuromask.io.nifti import load_volume, save_volume


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def small(tiny_cohort, tmp_path):
    """A writable copy of four sessions of the tiny cohort."""
    table = pd.read_csv(tiny_cohort.participants, sep="\t").iloc[:4]
    caps = tmp_path / "caps"
    for p, s in zip(table["participant_id"], table["session_id"], strict=True):
        target = gm_map_path(caps, p, s)
        target.parent.mkdir(parents=True)
        shutil.copy(gm_map_path(tiny_cohort.caps, p, s), target)
    tsv = tmp_path / "participants.tsv"
    table.to_csv(tsv, sep="\t", index=False)
    return caps, tsv, table


def expect_clean_error(code, output, out, *patterns):
    assert code == 1, output
    assert "Traceback" not in output
    assert not out.exists()
    for pattern in patterns:
        assert pattern in output, output


def test_every_option_is_explained():
    for name, command in all_commands().items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.name} has no help"
        code, output = run(name, "--help")
        assert code == 0 and "Usage: " in output


def test_top_level_help_lists_every_command_without_loading_them():
    commands = all_commands()
    assert set(commands) == set(SUMMARIES)
    assert all(command.name == name for name, command in commands.items())
    # in a fresh interpreter: `neuromask --help` must not import torch or nilearn
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from neuromask.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "print(result.exit_code, 'torch' in sys.modules, 'nilearn' in sys.modules)\n"
        "print(result.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    status, listing = done.stdout.split("\n", 1)
    assert status == "0 False False", done.stdout + done.stderr
    for name, summary in SUMMARIES.items():
        assert f"  {name} " in listing and summary.split()[0] in listing


def test_qc_end_to_end(small, tmp_path):
    caps, tsv, _ = small
    code, output = run("qc", caps, tsv, tmp_path / "qc", "--quiet")
    assert code == 0, output
    assert (tmp_path / "qc" / "pass.tsv").is_file() and (tmp_path / "qc" / "qc.png").is_file()


@pytest.mark.parametrize(
    ("edit", "patterns"),
    [
        (lambda t: t.drop(columns=["sex"]), ["lacks the column(s) sex"]),
        (
            lambda t: t.assign(diagnosis=["AD", "CN", "MCI", "AD"]),
            ["line 4", "unknown diagnosis 'MCI'"],
        ),
        (lambda t: pd.concat([t, t.iloc[[1]]]), ["line 6", "duplicate row"]),
        (
            lambda t: t.assign(participant_id=["sub-../../etc"] + t["participant_id"].tolist()[1:]),
            ["line 2", "not a BIDS label"],
        ),
    ],
)
def test_bad_tables_are_named(small, tmp_path, edit, patterns):
    caps, tsv, table = small
    bad = tmp_path / "bad.tsv"
    edit(table).to_csv(bad, sep="\t", index=False)
    for command in (["split", bad, tmp_path / "out"], ["qc", caps, bad, tmp_path / "out"]):
        code, output = run(*command)
        if command[0] == "qc" and "sex" in patterns[0]:
            continue  # qc does not need demographic columns
        expect_clean_error(code, output, tmp_path / "out", "bad.tsv", *patterns)


def _first_map(caps, table):
    return gm_map_path(caps, table["participant_id"][1], table["session_id"][1])


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])


def _garbage(path):
    path.write_bytes(gzip.compress(b"garbage" * 100))


def _nan(path):
    data, grid = load_volume(path)
    data[3, 3, 3] = np.nan
    save_volume(path, data, grid)


def _four_d(path):
    data, grid = load_volume(path)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), grid.affine), path)


def _other_grid(path):
    data, grid = load_volume(path)
    affine = grid.affine.copy()
    affine[:3, 3] += 1.5
    save_volume(path, data, type(grid)(grid.shape, affine))


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda p: p.unlink(), "does not exist"),
        (_truncate, "corrupt or truncated"),
        (_garbage, "cannot be read as NIfTI"),
        (_nan, "NaN or infinite"),
        (_four_d, "a single 3D volume is expected"),
        (_other_grid, "different voxel grid"),
    ],
)
def test_bad_images_are_named(small, tmp_path, damage, pattern):
    caps, tsv, table = small
    path = _first_map(caps, table)
    damage(path)
    code, output = run("qc", caps, tsv, tmp_path / "out", "--quiet")
    expect_clean_error(code, output, tmp_path / "out", path.name, pattern)


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "synth"
    args = [
        "synth",
        out,
        "--voxel-size",
        6,
        "--subjects-per-class",
        1,
        "--sessions",
        1,
        1,
        "--quiet",
    ]
    assert run(*args)[0] == 0
    marker = out / "participants.tsv"
    before = marker.read_text()
    code, output = run(*args)
    assert code == 1 and "already exists" in output and "--overwrite" in output
    assert "Traceback" not in output and marker.read_text() == before
    code, output = run(*args, "--overwrite", "--seed", 3)
    assert code == 0, output
    assert marker.read_text() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no staging folders left


def test_bad_option_values_are_usage_errors(tmp_path):
    code, output = run(
        "synth", tmp_path / "s", "--atrophy-rois", "Hippocampus,Nowhere", "--voxel-size", 6
    )
    expect_clean_error(code, output, tmp_path / "s", "Unknown ROI 'Nowhere'")
    code, output = run("synth", tmp_path / "s", "--cohort", "oasis")
    assert code == 2 and "oasis" in output


def test_the_installed_command_exits_without_traceback(tmp_path):
    """A real process, as a user runs it: message on stderr, status 1."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuromask",
            "split",
            str(tmp_path / "none.tsv"),
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "none.tsv does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
