"""ClinicaDL users' inputs end to end: a MAPS (made in ClinicaDL's format by
examples/make_clinicadl_maps.py) in the commands that take a model, and the split
folders of ``clinicadl tsvtools``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.io.layout import CLINICADL_KFOLD, CLINICADL_SINGLE, NEUROMASK, SplitLayout
from neuromask.train.splits_io import read_split_folder

EXAMPLE = Path(__file__).parents[1] / "examples" / "make_clinicadl_maps.py"


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def one_line_error(code, output):
    assert code == 1 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    return " ".join(line.strip() for line in lines)


@pytest.fixture(scope="module")
def maps(tiny_training, tmp_path_factory):
    """Conv5_FC3 trained on split 0 of the tiny cohort, written as a ClinicaDL MAPS."""
    root = tmp_path_factory.mktemp("clinicadl") / "maps"
    t = tiny_training
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(t["caps"]), str(t["split"]), str(root),
         "--epochs", "12", "--learning-rate", "0.0005"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps_settings") / "group.toml"
    path.write_text("max_epochs = 3\npatience = 3\nbatch_size = 4\n")
    return path


def test_mask_group_on_a_maps(maps, tiny_training, settings, tmp_path):
    t = tiny_training
    out = tmp_path / "mask"
    code, output = run(
        "mask", "group", maps, "--split", 0, t["caps"], t["split"] / "split-0" / "train.tsv",
        out, "--config", settings, "-q",
    )  # fmt: skip
    assert code == 0, output
    mask = nib.load(out / "mask.nii.gz")
    image = nib.load(next(Path(t["caps"]).rglob("*_probability.nii.gz")))
    np.testing.assert_allclose(mask.affine, image.affine)
    assert mask.shape == image.shape
    job = json.loads((out / "mask_job.json").read_text())
    assert job["model_dir"].endswith("maps/split-0/best-loss")
    model = json.loads((out / "mask.json").read_text())["Model"]
    assert model["Source"] == "ClinicaDL MAPS" and model["architecture"] == "Conv5_FC3"
    assert (model["split"], model["selection_metric"]) == (0, "loss")
    # early stopping used the MAPS's own validation group
    selection = pd.read_csv(out / "selection.tsv", sep="\t")
    assert len(selection) > 0


def test_evaluate_writes_next_to_clinicadls_predictions(maps, tiny_training):
    t = tiny_training
    code, output = run(
        "evaluate", maps, "--split", 0, "--selection-metric", "balanced_accuracy",
        t["caps"], t["split"] / "test.tsv", "--name", "test", "-q",
    )  # fmt: skip
    assert code == 0, output
    metrics = json.loads(
        (maps / "split-0" / "best-balanced_accuracy" / "test" / "metrics.json").read_text()
    )
    assert 0 <= metrics["balanced_accuracy"] <= 1


@pytest.mark.slow  # occlusion's windows of 8 voxels: 92 s with windows of 4 (round 23)
def test_sanity_on_a_maps_leaves_out_the_shuffled_test(maps, tmp_path):
    short = tmp_path / "mask.toml"
    short.write_text("refine_epochs = 2\n")
    code, output = run(
        "sanity", maps, "--split", 0, tmp_path / "sanity", "--methods", "mask,occlusion",
        "--images", 2, "--mask-epochs", 2, "--mask-config", short, "--window", 8, "-q",
    )  # fmt: skip
    assert code == 0, output
    settings = json.loads((tmp_path / "sanity" / "settings.json").read_text())
    assert settings["group_mask"]["refine_epochs"] == 2
    assert "shuffled-label test" in output and "left out" in output
    table = pd.read_csv(tmp_path / "sanity" / "explainers.tsv", sep="\t")
    assert set(table["method"]) >= {"mask", "occlusion"}
    code, output = run("sanity", maps, "--split", 0, tmp_path / "s2", "--shuffled", "-q")
    assert "run without --shuffled" in one_line_error(code, output)


def test_maps_choice_errors(maps, tiny_training, tmp_path):
    t = tiny_training
    two = tmp_path / "two"
    shutil.copytree(maps, two)
    shutil.copytree(two / "split-0", two / "split-1")
    args = [t["caps"], t["split"] / "test.tsv", "--name", "x"]
    message = one_line_error(*run("evaluate", two, *args))
    assert "splits [0, 1]; choose one with --split" in message
    message = one_line_error(
        *run("evaluate", two, "--split", 0, "--selection-metric", "auc", *args)
    )
    assert "no model selected on 'auc'" in message


# ------------------------------------------------------------------ ClinicaDL split folders
def clinicadl_kfold(split_dir: Path, root: Path) -> Path:
    """The folders `clinicadl tsvtools split` then `kfold` would have written for the
    same subjects: split/test_baseline.tsv and split/2_fold/split-<k>/... with
    validation_baseline.tsv, and no age or sex columns in the fold tables."""
    layout = SplitLayout(split_dir)
    kfold = root / "split" / "2_fold"
    pd.read_csv(layout.test_tsv, sep="\t").to_csv(root / "split" / "test_baseline.tsv", sep="\t", index=False) if (root / "split").mkdir(parents=True) is None else None  # fmt: skip
    for k in layout.splits():
        fold = kfold / f"split-{k}"
        fold.mkdir(parents=True)
        for part, name in (("train", "train.tsv"), ("validation", "validation_baseline.tsv")):
            table = pd.read_csv(layout.fold_tsv(k, part), sep="\t")
            table[["participant_id", "session_id", "diagnosis"]].to_csv(
                fold / name, sep="\t", index=False
            )
    (kfold / "kfold.json").write_text(json.dumps({"n_splits": 2, "subset_name": "validation"}))
    return kfold


def test_clinicadl_kfold_folder_reads_as_the_same_split(tiny_training, tmp_path):
    split = tiny_training["split"]
    kfold = clinicadl_kfold(split, tmp_path)
    ours, theirs = read_split_folder(split), read_split_folder(kfold)
    assert (ours.kind, theirs.kind) == (NEUROMASK, CLINICADL_KFOLD)
    for k in ours.folds:
        for a, b in zip(ours.folds[k], theirs.folds[k], strict=True):
            assert a[["participant_id", "session_id"]].equals(b[["participant_id", "session_id"]])
    key = ["participant_id", "session_id"]
    assert set(map(tuple, theirs.train_val[key].to_numpy())) == set(
        map(tuple, ours.train_val[key].to_numpy())
    )
    assert SplitLayout(kfold).find_test_tsv() == tmp_path / "split" / "test_baseline.tsv"


def test_train_and_mask_on_a_clinicadl_kfold_folder(tiny_training, tmp_path):
    t = tiny_training
    kfold = clinicadl_kfold(t["split"], tmp_path)
    code, output = run("train", t["caps"], kfold, tmp_path / "models", "--split", 0, "--config", t["config"], "-q")  # fmt: skip
    assert code == 0, output
    assert f"{CLINICADL_KFOLD} layout" in " ".join(output.split())
    from neuromask.jobs.trained_model import TrainedModel

    trained = TrainedModel.open(tmp_path / "models" / "split-0" / "run-0", "cpu")
    assert trained.validation_tsv() == kfold / "split-0" / "validation_baseline.tsv"
    assert trained.training_tables()[1] == kfold / "split-0" / "train.tsv"


def test_clinicadl_single_split_folder(tiny_training, tmp_path):
    layout = SplitLayout(tiny_training["split"])
    single = tmp_path / "split"
    single.mkdir()
    shutil.copy(layout.fold_tsv(0, "train"), single / "train.tsv")
    shutil.copy(layout.fold_tsv(0, "validation"), single / "validation_baseline.tsv")
    folder = read_split_folder(single)
    assert folder.kind == CLINICADL_SINGLE and list(folder.folds) == [0]
    assert "one split" in SplitLayout(single).describe()


def test_clinicadl_folder_with_missing_files(tiny_training, tmp_path):
    t = tiny_training
    kfold = clinicadl_kfold(t["split"], tmp_path)
    (kfold / "split-1" / "validation_baseline.tsv").unlink()
    message = one_line_error(*run("train", t["caps"], kfold, tmp_path / "m", "--config", t["config"], "-q"))  # fmt: skip
    assert "lacks split-1/validation.tsv or validation_baseline.tsv" in message
    assert "ClinicaDL kfold layout" in message


def test_a_study_on_a_clinicadl_kfold_folder(tiny_training, tmp_path):
    """`study` takes a ClinicaDL split folder in [data] split_dir: its folds, and the
    test_baseline.tsv that `tsvtools split` wrote one level up as the test set."""
    from conftest import study_toml

    kfold = clinicadl_kfold(tiny_training["split"], tmp_path)
    config = study_toml(tiny_training, tmp_path / "study.toml")
    text = config.read_text().replace(str(tiny_training["split"]) + '"', str(kfold) + '"')
    config.write_text(text.replace("runs = 2", "runs = 1"))
    out = tmp_path / "study"
    code, output = run("study", "cnn", "--config", config, "--out", out, "-q")
    assert code == 0, output
    evaluations = sorted((out / "models").rglob("test/metrics.json"))
    assert len(evaluations) == 2
    assert json.loads(evaluations[0].read_text())["tsv"] == str(
        tmp_path / "split" / "test_baseline.tsv"
    )
