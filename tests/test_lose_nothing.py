"""neuromask loses nothing: --overwrite and --name never remove what the command does not
own, records name their inputs so that any working folder reads them the same, a command
that cannot start leaves nothing behind, and bad files give one line, not a traceback.

Each test reproduces a failure found by probing the commands as a hostile but realistic
user would, on the tiny 6 mm cohort.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.data.dataset import load_gm_maps
from neuromask.errors import NeuromaskWarning, TableError
from neuromask.io.caps import gm_map_path
from neuromask.io.participants import read_participants


def run(*args: object, cwd: Path | None = None) -> tuple[int, str]:
    """The command's exit code and output; an unexpected exception fails the test."""
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def one_line_error(code: int, output: str) -> str:
    """The error line, checked to be the only one and to come with exit status 1 or 2."""
    assert code in (1, 2), output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    return errors[0]


def tree_hash(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) with the hash of its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


@pytest.fixture
def model(tiny_model, tmp_path):
    """A copy of the tiny model's run folder, free to be damaged."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


# ------------------------------------------------------------------ 1. --name
@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "a/b", "/abs/dir", "-x"])
def test_evaluate_name_must_be_one_plain_label(model, tiny_training, tmp_path, name):
    victim = tmp_path / "abs" / "dir"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    name = str(victim) if name == "/abs/dir" else name
    before, victim_before = tree_hash(model), tree_hash(victim)
    t = tiny_training
    code, output = run(
        "evaluate", model, t["caps"], t["split"] / "test.tsv", "--name", name, "--overwrite", "-q"
    )
    assert "--name must be a plain label" in one_line_error(code, output)
    assert tree_hash(model) == before and tree_hash(victim) == victim_before


# ------------------------------------------------------------------ 2. --overwrite
def test_qc_overwrite_never_removes_its_inputs(tiny_cohort, tmp_path):
    cohort = Path(shutil.copytree(tiny_cohort.out, tmp_path / "cohort"))
    before = tree_hash(cohort)
    code, output = run("qc", cohort / "caps", cohort / "participants.tsv", cohort, "--overwrite")
    assert "holds the input" in one_line_error(code, output)
    assert tree_hash(cohort) == before


def test_mask_overwrite_never_removes_the_model(model, tiny_training, tmp_path):
    t = tiny_training
    before = tree_hash(model)
    train = t["split"] / "split-0" / "train.tsv"
    code, output = run("mask", "group", model, t["caps"], train, model, "--overwrite", "-q")
    assert "is the input" in one_line_error(code, output)
    assert tree_hash(model) == before
    short = ["--config", _short_mask(tmp_path), "-q"]
    code, output = run("mask", "group", model, t["caps"], train, model / "mask", *short)
    assert code == 0, output  # a new folder inside the model's is fine ...
    masks = tree_hash(model)
    other = ["--preset", "paper", *short]  # another job: it would replace the first
    code, output = run(
        "mask", "group", model, t["caps"], train, model / "mask", *other, "--overwrite"
    )
    assert "lies inside the input" in one_line_error(code, output)  # ... emptying it is not
    assert tree_hash(model) == masks


@pytest.mark.parametrize("command", ["qc", "mask"])
def test_overwrite_never_empties_a_folder_neuromask_did_not_write(
    command, tiny_cohort, tiny_model, tiny_training, tmp_path
):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("months of work")
    before = tree_hash(foreign)
    if command == "qc":
        args = ["qc", tiny_cohort.caps, tiny_cohort.participants, foreign, "-q"]
    else:
        t = tiny_training
        args = ["mask", "group", tiny_model, t["caps"], t["split"] / "split-0" / "train.tsv"]
        args += [foreign, "-q"]
    code, output = run(*args, "--overwrite")
    assert "not an output of this command" in one_line_error(code, output)
    assert tree_hash(foreign) == before


def test_overwrite_replaces_the_commands_own_output(tiny_cohort, tmp_path):
    out = tmp_path / "qc"
    for _ in range(2):
        code, output = run(
            "qc", tiny_cohort.caps, tiny_cohort.participants, out, "-q", "--overwrite"
        )
        assert code == 0, output
    assert (out / "qc.json").is_file() and (out / "pass.tsv").is_file()


# ------------------------------------------------------------------ 3. the image cache
def _same_size_gz(raw: bytes, size: int | None = None) -> bytes:
    """``raw`` gzipped, padded to ``size`` bytes with the header's file-name field."""
    for pad in range(0, 4096):
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="n" * (pad + 1), mode="wb", fileobj=buffer, mtime=0) as f:
            f.write(raw)
        data = buffer.getvalue()
        if size is None or len(data) == size:
            return data
    raise AssertionError("could not pad the file to the same size")


def test_a_file_replaced_with_the_same_size_and_time_is_read_again(tiny_cohort, tmp_path):
    caps = Path(shutil.copytree(tiny_cohort.caps, tmp_path / "caps"))
    sessions = read_participants(tiny_cohort.participants).iloc[:3]
    path = gm_map_path(caps, sessions["participant_id"][0], sessions["session_id"][0])
    img = nib.load(path)
    old = np.asarray(img.dataobj, dtype=np.float32)
    new = np.clip(old[::-1], 0, 1).astype(np.float32)  # another brain, same grid
    raw_old = nib.Nifti1Image(old, img.affine, img.header).to_bytes()
    raw_new = nib.Nifti1Image(new, img.affine, img.header).to_bytes()
    first, second = _same_size_gz(raw_old), _same_size_gz(raw_new)
    size = max(len(first), len(second))
    path.write_bytes(_same_size_gz(raw_old, size))
    stamp = path.stat()
    cached = load_gm_maps(caps, sessions, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(cached.images[0], old)
    path.write_bytes(_same_size_gz(raw_new, size))  # as cp -p or rsync -a leave it
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == stamp.st_size and path.stat().st_mtime_ns == stamp.st_mtime_ns
    again = load_gm_maps(caps, sessions, cache_dir=tmp_path / "cache", progress=False)
    assert not again.from_cache and np.array_equal(again.images[0], new)


# ------------------------------------------------------------------ 4. recorded paths
def test_a_model_works_from_any_folder_and_says_when_its_split_is_gone(
    tiny_training, tiny_cohort, tmp_path
):
    t = tiny_training
    work = tmp_path / "work"
    shutil.copytree(t["split"], work / "split")
    shutil.copytree(t["caps"], work / "syn" / "caps")
    code, output = run(
        "train",
        "syn/caps",
        "split",
        "models",
        "--config",
        t["config"],
        "--split",
        "0",
        "-q",
        cwd=work,
    )
    assert code == 0, output
    model = work / "models" / "split-0" / "run-0"
    record = json.loads((model / "config.json").read_text())
    assert Path(record["caps"]) == (work / "syn" / "caps").resolve()
    assert Path(record["split_dir"]) == (work / "split").resolve()
    # From a folder that holds another split/, the model's own validation set is used.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(t["split"], elsewhere / "split")
    shutil.copy(t["split"] / "test.tsv", elsewhere / "split" / "split-0" / "validation.tsv")
    train = work / "split" / "split-0" / "train.tsv"
    code, output = run(
        "mask",
        "group",
        model,
        work / "syn" / "caps",
        train,
        "m1",
        "-q",
        "--config",
        _short_mask(tmp_path),
        cwd=elsewhere,
    )
    assert code == 0, output
    used = pd.read_csv(elsewhere / "m1" / "selection.tsv", sep="\t")
    own = read_participants(work / "split" / "split-0" / "validation.tsv")
    validation = used[used["used_for"] == "validation"]
    assert set(validation["participant_id"]) <= set(own["participant_id"])
    # The split folder it was trained with is gone: say so, and name the way out.
    shutil.move(work / "split", tmp_path / "moved-split")
    code, output = run(
        "mask",
        "group",
        model,
        work / "syn" / "caps",
        tmp_path / "moved-split" / "split-0" / "train.tsv",
        tmp_path / "m2",
        "-q",
    )
    line = one_line_error(code, output)
    assert "no longer exists" in line and "--validation" in line
    assert not (tmp_path / "m2").exists()


def _short_mask(tmp_path: Path) -> Path:
    path = tmp_path / "short.toml"
    path.write_text('max_epochs = 2\npatience = 2\nscore = "probability"\n')
    return path


def test_a_changed_validation_set_is_named(model, tiny_training, tmp_path):
    record = json.loads((model / "config.json").read_text())
    split = Path(record["split_dir"])
    moved = Path(shutil.copytree(split, tmp_path / "split"))
    record["split_dir"] = str(moved)
    (model / "config.json").write_text(json.dumps(record))
    table = pd.read_csv(moved / "split-0" / "validation.tsv", sep="\t")
    table.iloc[:-1].to_csv(moved / "split-0" / "validation.tsv", sep="\t", index=False)
    t = tiny_training
    code, output = run(
        "mask",
        "group",
        model,
        t["caps"],
        t["split"] / "split-0" / "train.tsv",
        tmp_path / "m",
        "-q",
    )
    line = one_line_error(code, output)
    assert "changed since the model" in line and "--validation" in line


# ------------------------------------------------------------------ 5. values out of [0, 1]
@pytest.mark.parametrize("scale", [3.0, 1000.0])
def test_qc_rejects_maps_that_are_not_probabilities(tiny_cohort, tmp_path, scale):
    caps = Path(shutil.copytree(tiny_cohort.caps, tmp_path / "caps"))
    sessions = read_participants(tiny_cohort.participants)
    p, s = sessions["participant_id"][0], sessions["session_id"][0]
    path = gm_map_path(caps, p, s)
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32) * scale
    dtype = np.int16 if scale == 1000.0 else np.float32
    nib.save(nib.Nifti1Image(data.astype(dtype), img.affine), path)
    code, output = run("qc", caps, tiny_cohort.participants, tmp_path / "qc", "-q")
    assert code == 0, output
    qc = pd.read_csv(tmp_path / "qc" / "qc.tsv", sep="\t")
    row = qc[(qc["participant_id"] == p) & (qc["session_id"] == s)].iloc[0]
    assert not row["qc_pass"] and "outside [0, 1]" in row["qc_reason"]
    with pytest.warns(NeuromaskWarning, match="is not a GM probability map"):
        load_gm_maps(caps, sessions.iloc[:1], progress=False)


# ------------------------------------------------------------------ 6. contradictory rows
def _table(tmp_path: Path, rows: list[tuple[str, str, str, float, str]]) -> Path:
    path = tmp_path / "participants.tsv"
    pd.DataFrame(rows, columns=["participant_id", "session_id", "diagnosis", "age", "sex"]).to_csv(
        path, sep="\t", index=False
    )
    return path


def test_contradictory_rows_are_named(tmp_path):
    from neuromask.data.split import stable_subjects

    path = _table(
        tmp_path,
        [
            ("sub-01", "ses-M000", "CN", 70.0, "M"),
            ("sub-01", "ses-M012", "AD", 71.0, "M"),
            ("sub-01", "ses-M024", "CN", 72.0, "M"),
            ("sub-02", "ses-M000", "AD", 70.0, "F"),
            ("sub-02", "ses-M012", "AD", 71.0, "M"),
            ("sub-03", "ses-M000", "CN", 70.0, "F"),
        ],
    )
    with pytest.warns(NeuromaskWarning) as caught:
        table = read_participants(path)
    text = " ".join(str(w.message) for w in caught)
    assert "sub-01 (CN -> AD -> CN)" in text and "sub-02 (F -> M)" in text
    with pytest.raises(TableError, match="sub-02"):
        stable_subjects(table)
    fixed = table[table["participant_id"] != "sub-02"]
    with pytest.warns(NeuromaskWarning, match="Left out 1 subject.*sub-01"):
        kept = stable_subjects(fixed)
    assert set(kept["participant_id"]) == {"sub-03"}


def test_qc_names_the_columns_split_will_need(tiny_cohort, tmp_path):
    table = pd.read_csv(tiny_cohort.participants, sep="\t").drop(columns=["sex"])
    table.to_csv(tmp_path / "nosex.tsv", sep="\t", index=False)
    code, output = run("qc", tiny_cohort.caps, tmp_path / "nosex.tsv", tmp_path / "qc", "-q")
    assert code == 0 and "Warning" in output and "lacks the column(s) sex" in output


# ------------------------------------------------------------------ 7. nothing left behind
@pytest.mark.parametrize("kind", ["group", "session"])
def test_a_mask_job_that_cannot_start_leaves_nothing(kind, tiny_model, tiny_training, tmp_path):
    t = tiny_training
    cn_only = read_participants(t["split"] / "split-0" / "train.tsv")
    cn_only = cn_only[cn_only["diagnosis"] == "CN"]
    cn_only.to_csv(tmp_path / "cn.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    code, output = run("mask", kind, tiny_model, t["caps"], tmp_path / "cn.tsv", out, "-q")
    assert "no AD session" in one_line_error(code, output)
    assert not out.exists()
    config = ["--config", _short_mask(tmp_path)]
    code, output = run(
        "mask", kind, tiny_model, t["caps"], t["split"] / "test.tsv", out, "-q", *config
    )
    assert code == 0, output


# ------------------------------------------------------------------ 8. one line, no traceback
@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "does not hold a neuromask model record"),
        ('{"format": 1}', "lacks train, input_shape"),
    ],
)
def test_a_damaged_model_record_is_one_line(model, tiny_training, tmp_path, content, expected):
    (model / "config.json").write_text(content)
    t = tiny_training
    code, output = run("evaluate", model, t["caps"], t["split"] / "test.tsv", "--name", "t", "-q")
    assert expected in one_line_error(code, output)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("checkpoint", ["foreign", "empty", "not a mapping"])
def test_a_bad_checkpoint_is_one_line_and_never_unpickled(tiny_training, tmp_path, checkpoint):
    t = tiny_training
    args = ["train", t["caps"], t["split"], tmp_path / "m", "--config", t["config"], "-q"]
    code, output = run(*args, "--split", "0")
    assert code == 0, output
    run_dir = tmp_path / "m" / "split-0" / "run-0"
    (run_dir / "validation_metrics.json").unlink()  # as if killed before the end
    target = run_dir / "checkpoint.pt"
    if checkpoint == "foreign":
        target.write_bytes(pickle.dumps({"model": _Payload()}))
    elif checkpoint == "empty":
        target.write_bytes(b"")
    else:
        import torch

        torch.save([1, 2, 3], target)
    code, output = run(*args, "--split", "0", cwd=tmp_path)
    line = one_line_error(code, output)
    assert "Checkpoint" in line and "Remove it" in line and "weights_only" not in line
    assert not (tmp_path / "pwned").exists()


def test_an_output_under_a_file_and_a_read_only_disk_are_one_line(
    tiny_cohort, tmp_path, monkeypatch
):
    (tmp_path / "afile").write_text("x")
    code, output = run("qc", tiny_cohort.caps, tiny_cohort.participants, tmp_path / "afile" / "o")
    assert "which is a file" in one_line_error(code, output)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro"))

    import neuromask.io.atomic as atomic

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", read_only)
    code, output = run("qc", tiny_cohort.caps, tiny_cohort.participants, tmp_path / "ro", "-q")
    assert "Read-only file system" in one_line_error(code, output)


def test_smaller_things(tiny_cohort, tmp_path):
    # An image path that is a folder says so.
    sessions = read_participants(tiny_cohort.participants).iloc[:1]
    caps = tmp_path / "caps"
    path = gm_map_path(caps, sessions["participant_id"][0], sessions["session_id"][0])
    path.mkdir(parents=True)
    sessions.to_csv(tmp_path / "one.tsv", sep="\t", index=False)
    code, output = run("qc", caps, tmp_path / "one.tsv", tmp_path / "qc", "-q")
    assert "is a folder, not a file" in one_line_error(code, output)
    # synth names its options, not the dataclass's fields.
    code, output = run("synth", tmp_path / "s", "--voxel-size", "-1")
    line = one_line_error(code, output)
    assert "--voxel-size" in line and "SynthConfig" not in line
    code, output = run("synth", tmp_path / "s", "--atrophy-rois", "random:x")
    assert "--atrophy-rois" in one_line_error(code, output)
    # Output folders get the usual permissions, like every other output.
    old = os.umask(0o022)
    try:
        code, output = run("qc", tiny_cohort.caps, tiny_cohort.participants, tmp_path / "q", "-q")
    finally:
        os.umask(old)
    assert code == 0 and (tmp_path / "q").stat().st_mode & 0o777 == 0o755


def test_a_study_folder_moved_as_a_whole_still_works(tiny_training, tmp_path):
    t = tiny_training
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.toml").write_text("# a study folder\n")
    shutil.copytree(t["split"], study / "data" / "split")
    shutil.copytree(t["caps"], study / "data" / "caps")
    code, output = run(
        "train",
        study / "data" / "caps",
        study / "data" / "split",
        study / "models",
        "--config",
        t["config"],
        "--split",
        "0",
        "-q",
    )
    assert code == 0, output
    record = json.loads((study / "models" / "split-0" / "run-0" / "config.json").read_text())
    assert record["caps"] == "../../../data/caps"  # inside the study: relative to the record
    moved = Path(shutil.move(study, tmp_path / "moved"))
    model = moved / "models" / "split-0" / "run-0"
    train = moved / "data" / "split" / "split-0" / "train.tsv"
    code, output = run(
        "mask",
        "group",
        model,
        moved / "data" / "caps",
        train,
        tmp_path / "m",
        "--config",
        _short_mask(tmp_path),
        "-q",
    )
    assert code == 0, output
    job = json.loads((tmp_path / "m" / "mask_job.json").read_text())
    assert Path(job["validation_tsv"]) == (moved / "data" / "split" / "split-0" / "validation.tsv")


def test_a_dry_run_claim_checks_everything_and_changes_nothing(tmp_path):
    from neuromask.errors import OutputExistsError
    from neuromask.io.claim import claim_job_dir

    out = tmp_path / "out"
    claim_job_dir(out, {"job": 1}, False, "job.json")
    (out / "result.txt").write_text("done")
    before = tree_hash(out)
    claim_job_dir(out, {"job": 2}, True, "job.json", dry_run=True)  # would replace it
    assert tree_hash(out) == before
    with pytest.raises(OutputExistsError, match="already holds other results"):
        claim_job_dir(out, {"job": 2}, False, "job.json", dry_run=True)
    with pytest.raises(OutputExistsError, match="is the input"):
        claim_job_dir(out, {"job": 2}, True, "job.json", inputs=[out], dry_run=True)
    fresh = tmp_path / "fresh"
    claim_job_dir(fresh, {"job": 1}, False, "job.json", dry_run=True)
    assert not fresh.exists()
    claim_job_dir(out, {"job": 2}, True, "job.json")  # for real: replaced
    assert not (out / "result.txt").exists() and (out / "job.json").is_file()


def test_single_file_outputs_never_replace_an_input(tiny_cohort, tiny_training, tmp_path):
    from conftest import study_toml

    # localize --out: never the map, never inside the ground truth
    mask = tmp_path / "mask.nii.gz"
    atrophy_map = tiny_cohort.ground_truth / "atrophy_map.nii.gz"
    shutil.copy(atrophy_map, mask)  # values in [0, 1]: a valid mask
    before = tree_hash(mask)
    code, output = run("localize", mask, "--truth", tiny_cohort.ground_truth, "--out", mask)
    assert "is the input" in one_line_error(code, output) and tree_hash(mask) == before
    inside = tiny_cohort.ground_truth / "scores.json"
    code, output = run("localize", mask, "--truth", tiny_cohort.ground_truth, "--out", inside)
    assert "lies inside the input" in one_line_error(code, output) and not inside.exists()
    # report --out: only an earlier report is replaced
    study = tmp_path / "study"
    study.mkdir()
    study_toml(tiny_training, study / "study.toml")
    settings = tree_hash(study / "study.toml")
    code, output = run("report", study, "--out", study / "study.toml")
    assert "not a neuromask report" in one_line_error(code, output)
    assert tree_hash(study / "study.toml") == settings
    for _ in range(2):
        code, output = run("report", study, "--out", tmp_path / "page.html")
        assert code == 0, output
    # search OUT: never an input folder
    t = tiny_training
    before = tree_hash(t["split"])
    code, output = run("search", t["caps"], t["split"], t["split"], "--trials", "1")
    assert "is the input" in one_line_error(code, output) and tree_hash(t["split"]) == before


def test_sigterm_removes_the_unfinished_output_and_says_how_to_finish(tmp_path, monkeypatch):
    """SIGTERM (kill, a scheduler's time limit) midway through an output: the staging
    folder goes, the command exits 143 with one line, and a rerun writes the output."""
    import signal

    import neuromask.data.synthetic as synthetic

    save = synthetic.save_volume
    calls = []

    def save_then_terminated(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second session is written, the rest is not
            os.kill(os.getpid(), signal.SIGTERM)

    def outside(signum, frame):  # reached only if the command did not handle SIGTERM
        raise AssertionError("SIGTERM reached the handler outside the command")

    monkeypatch.setattr(synthetic, "save_volume", save_then_terminated)
    before = signal.signal(signal.SIGTERM, outside)
    out = tmp_path / "synth"
    args = ["synth", out, "--voxel-size", 6, "--subjects-per-class", 2, "--quiet"]
    try:
        code, output = run(*args)
        assert signal.getsignal(signal.SIGTERM) is outside  # the command's handler is gone
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 143 and "Traceback" not in output, output
    assert "Terminated (SIGTERM)" in output and "same command again" in output
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []  # no staging folder left
    monkeypatch.setattr(synthetic, "save_volume", save)
    code, output = run(*args)
    assert code == 0, output
    assert (out / "participants.tsv").is_file()


@pytest.mark.parametrize("name", ["synth", "synth[1]"])  # a name glob would misread
def test_staging_folders_left_by_a_killed_run_are_named(tmp_path, name):
    """SIGKILL leaves a staging folder; the next run names it and its size, and leaves it
    (another run may own it)."""
    stale = tmp_path / f".{name}.abc123.partial"
    (stale / "caps").mkdir(parents=True)
    (stale / "caps" / "x.nii.gz").write_bytes(b"0" * 2**21)
    code, output = run("synth", tmp_path / name, "--voxel-size", 6, "--sessions", 1, 1, "--quiet")
    assert code == 0, output
    warning = [line for line in output.splitlines() if "unfinished output" in line]
    assert len(warning) == 1 and str(stale) in warning[0] and "(2 MiB)" in warning[0], output
    assert stale.is_dir()


def test_a_second_sigterm_does_not_break_off_the_clean_up():
    """A scheduler signals every process of a job, and a study's parent terminates its
    workers too: the second SIGTERM, during the clean-up, is ignored."""
    import signal

    from neuromask.cli.main import Terminated, sigterm_unwinds

    def outside(signum, frame):
        raise AssertionError("SIGTERM reached the handler outside the block")

    before = signal.signal(signal.SIGTERM, outside)
    cleaned = False
    try:
        with pytest.raises(Terminated), sigterm_unwinds():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # the second one, during clean-up
                cleaned = True
        assert cleaned and signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGTERM, before)
