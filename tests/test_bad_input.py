"""Generated bad input thrown at every command's loaders (Hypothesis).

Whatever the participants TSV, the NIfTI file or the TOML settings, a command either
succeeds or stops with exit status 1 or 2 and one line that names the file or the
option, with no traceback, nothing left behind in its output folder, and no input
changed. The inputs are hashed before and after every call.
"""

from __future__ import annotations

import hashlib
import shutil
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromask.cli.main import cli
from neuromask.io.caps import gm_map_path

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run and in CI
)


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def check(code: int, output: str, out: Path, names: list[str]) -> None:
    """The invariant of every call: success, or one named error and nothing left."""
    assert "Traceback" not in output, output
    if code == 0:
        return
    assert code in (1, 2), output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    # Rich and click wrap long lines: the error's text is read across its lines.
    text = " ".join(output.split())
    assert any(name in text for name in names), (names, output)
    assert not out.exists() or not any(out.iterdir()), f"{out} was left behind"


# ------------------------------------------------------------------ participants TSVs
IDS = st.sampled_from(["sub-01", "sub-02", "sub-AB3", "sub_01", "01", "", "sub-01 ", "sub-é"])
SESSIONS = st.sampled_from(["ses-M000", "ses-M012", "ses-M00", "M000", "", "ses-M000\t"])
VALUES = {
    "diagnosis": st.sampled_from(["AD", "CN", "MCI", "", "ad", "nan"]),
    "age": st.sampled_from(["70", "71.5", "-3", "", "seventy", "nan", "inf", "1e400"]),
    "sex": st.sampled_from(["M", "F", "X", "", "male"]),
    "extra": st.text(alphabet=string.ascii_letters + " ,;", max_size=5),
}
COLUMNS = ["participant_id", "session_id", *VALUES]


@st.composite
def tsv_text(draw: st.DrawFn) -> str:
    columns = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=6, unique=True))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        cells = []
        for column in columns:
            if column == "participant_id":
                cells.append(draw(IDS))
            elif column == "session_id":
                cells.append(draw(SESSIONS))
            else:
                cells.append(draw(VALUES[column]))
        rows.append("\t".join(cells))
    text = "\n".join(["\t".join(columns), *rows])
    if draw(st.booleans()):
        text = text.replace("\t", draw(st.sampled_from([",", "  ", "\t\t"])))
    return text + draw(st.sampled_from(["", "\n", "\n\n", "\x00"]))


@pytest.fixture(scope="module")
def inputs(tiny_model, tiny_training, tmp_path_factory):
    """A model, a CAPS folder and a split, copied so that their hashes are their own."""
    root = tmp_path_factory.mktemp("bad_input")
    model = Path(shutil.copytree(tiny_model, root / "model"))
    caps = Path(shutil.copytree(tiny_training["caps"], root / "caps"))
    return {"root": root, "model": model, "caps": caps}


@SETTINGS
@given(text=tsv_text(), command=st.sampled_from(["qc", "split", "evaluate", "mask"]))
def test_any_participants_tsv(inputs, text, command):
    with tempfile.TemporaryDirectory(dir=inputs["root"]) as tmp:
        tsv, out = Path(tmp) / "in.tsv", Path(tmp) / "out"
        tsv.write_bytes(text.encode("utf-8", "surrogatepass"))
        before = digest(inputs["model"], inputs["caps"], tsv)
        args = {
            "qc": ["qc", inputs["caps"], tsv, out],
            "split": ["split", tsv, out, "--test-subjects-per-class", "1", "--folds", "2"],
            "evaluate": ["evaluate", inputs["model"], inputs["caps"], tsv, "--name", "bad"],
            "mask": ["mask", "group", inputs["model"], inputs["caps"], tsv, out],
        }[command]
        code, output = invoke(*args, "-q") if command != "split" else invoke(*args)
        written = inputs["model"] / "bad" if command == "evaluate" else out
        check(code, output, written, [str(tsv), "in.tsv", "--"])
        if code == 0 and written.exists():
            shutil.rmtree(written)
        assert digest(inputs["model"], inputs["caps"], tsv) == before


# ------------------------------------------------------------------ NIfTI files
@st.composite
def nifti_bytes(draw: st.DrawFn) -> bytes:
    import nibabel as nib

    kind = draw(st.sampled_from(["garbage", "truncated", "4d", "nan", "huge", "tiny", "affine"]))
    if kind == "garbage":
        return draw(st.binary(min_size=0, max_size=400))
    shape = (5, 6, 7)
    data = np.full(shape, 0.5, np.float32)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    if kind == "4d":
        data = np.zeros((*shape, 2), np.float32)
    elif kind == "nan":
        data[0, 0, 0] = np.nan
    elif kind == "huge":
        data *= 1e30
    elif kind == "tiny":
        data = np.zeros((1, 1, 1), np.float32)
    elif kind == "affine":
        affine = np.diag([-6.0, 6.0, 6.0, 1.0])  # LAS, as SPM writes it
    raw = nib.Nifti1Image(data, affine).to_bytes()
    if kind == "truncated":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    import gzip

    return gzip.compress(raw, mtime=0) if draw(st.booleans()) else raw


@SETTINGS
@given(blob=nifti_bytes(), command=st.sampled_from(["qc", "compare", "localize"]))
def test_any_nifti_file(inputs, tiny_cohort, blob, command):
    with tempfile.TemporaryDirectory(dir=inputs["root"]) as tmp:
        tmp = Path(tmp)
        out = tmp / "out"
        if command == "qc":
            tsv = tmp / "one.tsv"
            tsv.write_text("participant_id\tsession_id\nsub-01\tses-M000\n")
            image = gm_map_path(tmp / "caps", "sub-01", "ses-M000")
            image.parent.mkdir(parents=True)
            image.write_bytes(blob)
            args = ["qc", tmp / "caps", tsv, out, "-q"]
        else:
            image = tmp / "mask.nii.gz"
            image.write_bytes(blob)
            if command == "compare":
                args = ["compare", image, image, "--out", out]
            else:
                args = ["localize", image, "--truth", tiny_cohort.ground_truth, "--out", out]
        before = digest(image)
        code, output = invoke(*args)
        check(code, output, out, [str(image), image.name])
        assert digest(image) == before


# ------------------------------------------------------------------ TOML settings
KEYS = {
    "train": ["learning_rate", "batch_size", "max_epochs", "normalization", "model", "seed"],
    "mask": ["lambda1", "beta1", "score", "max_epochs", "keep_above", "restrict_to_brain"],
    "study": ["data", "study", "train", "mask", "mask_grid"],
}
JUNK = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet=string.ascii_letters, max_size=4),
    st.lists(st.integers(-1, 2), max_size=3),
)


def toml_value(value: object) -> str:
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value)


@st.composite
def toml_text(draw: st.DrawFn, command: str) -> str:
    """Settings with at least one wrong entry: an unknown key or a value of a wrong kind."""
    keys = draw(st.lists(st.sampled_from(KEYS[command]), max_size=3, unique=True))
    lines = [f"{k} = {toml_value(draw(JUNK))}" for k in keys]
    lines.append(f"{draw(st.sampled_from(['nonsense', 'lambda_1', 'epochs']))} = 1")
    draw(st.randoms()).shuffle(lines)
    if draw(st.integers(0, 4)) == 0:
        lines.append(draw(st.sampled_from(["[", "key = ", "= 3", "[model", '"unterminated'])))
    return "\n".join(lines) + "\n"


@SETTINGS
@given(data=st.data(), command=st.sampled_from(["train", "mask", "study"]))
def test_any_settings_file(inputs, tiny_training, data, command):
    text = data.draw(toml_text(command))
    with tempfile.TemporaryDirectory(dir=inputs["root"]) as tmp:
        tmp = Path(tmp)
        config, out = tmp / "settings.toml", tmp / "out"
        config.write_text(text)
        split = tiny_training["split"]
        args = {
            "train": ["train", inputs["caps"], split, out, "--config", config, "-q"],
            "mask": [
                "mask",
                "group",
                inputs["model"],
                inputs["caps"],
                split / "test.tsv",
                out,
                "--config",
                config,
                "-q",
            ],
            "study": ["study", "cnn", "--config", config, "--out", out, "-q"],
        }[command]
        before = digest(inputs["model"], inputs["caps"], config)
        code, output = invoke(*args)
        assert code != 0, f"wrong settings were accepted:\n{text}"
        check(code, output, out, [str(config), config.name])
        assert digest(inputs["model"], inputs["caps"], config) == before
