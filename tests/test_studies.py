"""``neuromask study``: every study end to end on the tiny cohort, reruns that redo nothing,
and the tables' arithmetic."""

import json

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.metrics.sessions import session_similarity
from neuromask.studies.config import load_study_config, preset_names
from neuromask.studies.engine import job_counts


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cnn_table(finished_study):
    out = finished_study["out"]
    table = pd.read_csv(out / "cnn" / "balanced_accuracy.tsv", sep="\t")
    assert table["split"].astype(str).tolist() == ["0", "1", "mean", "sd"]
    runs = pd.read_csv(out / "cnn" / "balanced_accuracy_runs.tsv", sep="\t")
    assert len(runs) == 4
    for column in ("validation", "test", "independent"):
        per_fold = runs.groupby("split")[column].mean()
        np.testing.assert_allclose(table[column][:2], per_fold, atol=1e-6)
        assert table[column][2] == pytest.approx(per_fold.mean(), abs=1e-6)
    recorded = json.loads(
        (out / "models" / "split-1" / "run-1" / "validation_metrics.json").read_text()
    )
    assert runs.iloc[3]["validation"] == pytest.approx(
        recorded["metrics"]["balanced_accuracy"], abs=1e-6
    )


def test_mask_grid_tables(finished_study):
    out = finished_study["out"] / "mask-grid"
    masks = pd.read_csv(out / "masks.tsv", sep="\t")
    # 2 + 2 + 1 + 2 grid points; beta1=0.1 and beta2=1 are one setting, computed once.
    assert len(masks) == 7
    assert (
        masks.set_index(["parameter", "value"]).loc[("beta1", 0.1), "mask_file"]
        == (masks.set_index(["parameter", "value"]).loc[("beta2", 1.0), "mask_file"])
    )
    for name in ("beta1", "beta2", "lambda2"):
        table = pd.read_csv(out / f"similarity_{name}.tsv", sep="\t")
        matrix = table.iloc[:, 1:].to_numpy()
        assert matrix.shape == (2, 2)
        np.testing.assert_allclose(matrix, matrix.T)
    assert not (out / "similarity_lambda1.tsv").exists()  # one value: nothing to compare
    assert (out / "masks_beta1.png").stat().st_size > 10_000


def test_group_and_training_tables(finished_study):
    out = finished_study["out"]
    tops = pd.read_csv(out / "group" / "top_rois.tsv", sep="\t")
    assert sorted(zip(tops["split"], tops["cohort"], strict=True)) == [
        (0, "adni"),
        (0, "aibl"),
        (1, "adni"),
        (1, "aibl"),
    ]
    cohorts = pd.read_csv(out / "group" / "cohorts.tsv", sep="\t")
    assert cohorts["split"].astype(str).tolist() == ["0", "1", "mean"]
    assert ((cohorts["prob_cnn"] >= 0) & (cohorts["prob_cnn"] <= 1)).all()
    for figure in ("group/masks_folds_cohorts.png", "training/masks_folds.png"):
        assert (out / figure).stat().st_size > 10_000
    summary = pd.read_csv(out / "training" / "summary.tsv", sep="\t")
    assert summary["between"].tolist() == ["folds (run 0)", "runs (split 0)"]
    folds = pd.read_csv(out / "training" / "folds_prob_cnn.tsv", sep="\t").iloc[:, 1:].to_numpy()
    assert summary["mean_prob_cnn"][0] == pytest.approx(folds[0, 1], abs=1e-6)


def test_session_tables(finished_study):
    out = finished_study["out"]
    table = pd.read_csv(out / "session" / "similarity.tsv", sep="\t")
    assert table["metric"].tolist() == ["roi_similarity", "prob_cnn"]
    masks = pd.read_csv(out / "session" / "masks.tsv", sep="\t")
    assert masks["participant_id"].nunique() <= 3
    assert (
        table["pairs_inter"][0]
        == masks["participant_id"].nunique() * (masks["participant_id"].nunique() - 1) // 2
    )


def test_the_session_study_says_how_many_masks_did_not_fool_the_cnn(finished_study, monkeypatch):
    """`neuromask study session` warns, as `mask session` does, when session masks
    leave P(AD) at 0.5 or more, and counts them; the tiny study's masks all fool their
    CNN, so a rerun with a lower bar shows the warning."""
    import neuromask.jobs.masks as mask_jobs
    from neuromask.jobs.masks import unfooled_sessions_message

    assert unfooled_sessions_message(pd.Series([0.01, 0.2])) is None
    message = unfooled_sessions_message(pd.Series([0.01, 0.7, 0.5]))
    assert message is not None and message.startswith("2 of 3 session masks did not fool")
    masks = pd.read_csv(finished_study["out"] / "session" / "masks.tsv", sep="\t")
    expected = unfooled_sessions_message(masks["p_ad_after"])
    output = " ".join(finished_study["output"].split())
    assert ("session masks did not fool the CNN" in output) == (expected is not None)
    if expected is not None:
        assert " ".join(expected.split()[:6]) in output
    monkeypatch.setattr(mask_jobs, "UNFOOLED", float(masks["p_ad_after"].min()))
    code, output = run(
        "study", "session", "--config", finished_study["config"], "--out",
        finished_study["out"], "-q",
    )  # fmt: skip
    assert code == 0, output
    n = len(masks)
    assert f"{n} of {n} session masks did not fool the CNN" in " ".join(output.split())


def test_rerun_redoes_no_job(finished_study):
    out = finished_study["out"]
    before = (out / "cnn" / "balanced_accuracy.tsv").read_text()
    code, output = run("study", "all", "--config", finished_study["config"], "--out", out, "-q")
    assert code == 0, output
    assert (out / "cnn" / "balanced_accuracy.tsv").read_text() == before
    study = optuna.load_study(study_name="neuromask", storage=f"sqlite:///{out / 'jobs.db'}")
    counts = job_counts(study)
    # 4 trainings, 8 evaluations, 6 group-mask settings of fold 0 run 0 (grid + defaults)
    # and the other folds' and runs' masks, 1 session job: each ran exactly once.
    assert set(counts.values()) == {1}
    assert sum(k.startswith("train/") for k in counts) == 4
    assert sum(k.startswith("evaluate/") for k in counts) == 8
    assert sum(k.startswith("sessions/") for k in counts) == 1


def test_other_settings_in_the_same_folder_are_refused(finished_study, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(finished_study["config"].read_text().replace("runs = 2", "runs = 3"))
    code, output = run("study", "cnn", "--config", other, "--out", finished_study["out"])
    assert code == 1 and "holds a study with other settings" in output


def test_config_errors_name_the_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nsynthetic = true\n[masks]\nmax_epochs = 3\n")
    code, output = run("study", "cnn", "--config", bad, "--out", tmp_path / "o")
    assert code == 1 and "unknown table(s) masks" in output
    bad.write_text("[data]\nsynthetic = true\n[mask]\nlambda1 = -1.0\n")
    code, output = run("study", "cnn", "--config", bad, "--out", tmp_path / "o")
    assert code == 1 and "lambda1 must be >= 0" in output
    bad.write_text("[data]\ncaps = 'x'\n")
    code, output = run("study", "cnn", "--config", bad, "--out", tmp_path / "o")
    assert code == 1 and "needs caps and split_dir" in output


def test_presets_load():
    assert set(preset_names()) >= {"small", "paper", "paper-small"}
    paper, _ = load_study_config("paper")
    assert (paper.study.folds, paper.study.runs, paper.data.voxel_size) == (5, 5, 1.5)
    assert paper.data.test_subjects_per_class == 100
    assert len(paper.mask_grid.settings(paper.mask)) == 15
    small, _ = load_study_config("small")
    assert small.data.synthetic and small.data.voxel_size == 3.0


def test_paper_study_preset_runs_the_papers_method_everywhere():
    import dataclasses

    from neuromask.explain import mask_preset

    paper, _ = load_study_config("paper")
    assert paper.train.model_preset == "paper" and paper.train.model.n_blocks == 7
    assert paper.mask == mask_preset("paper")
    assert paper.independent_mask == dataclasses.replace(
        mask_preset("paper"), patience=25, max_epochs=300
    )
    assert paper.session_mask == mask_preset("paper-session")
    grid = {(name, value): m for name, value, m in paper.mask_grid.settings(paper.mask)}
    for (name, value), m in grid.items():
        assert m.score == "probability" and not m.restrict_to_brain, (name, value)
        if name.startswith("beta"):  # the paper's partners of its beta grids
            assert (m.lambda1, m.lambda2) == (1e-4, 1e-3), (name, value)
        else:
            assert (m.beta1, m.beta2) == (0.1, 1.0)
        # Figure 4: lambda2 = 0.1 ran at a learning rate of 0.01, every other point at 0.1.
        assert m.learning_rate == (0.01 if (name, value) == ("lambda2", 0.1) else 0.1)
    assert grid[("lambda1", 0.01)].lambda2 == 1e-2 and grid[("lambda2", 0.01)].lambda1 == 1e-4


def test_paper_small_is_the_papers_method_at_the_small_presets_size():
    """Every setting of the paper's method, with only the sizes (epochs, batch) of the
    small preset so that it runs on two CPU cores."""
    import dataclasses

    from neuromask.explain import mask_preset

    paper, _ = load_study_config("paper-small")
    small, _ = load_study_config("small")
    assert paper.data == small.data and paper.study == small.study
    assert paper.train.model_preset == "paper" and paper.train.model.n_blocks == 7
    sizes = ("max_epochs", "patience", "batch_size")
    for table, preset in (
        ("mask", "paper"),
        ("independent_mask", "paper"),
        ("session_mask", "paper-session"),
    ):
        got = getattr(paper, table)
        same_sizes = {k: getattr(getattr(small, table), k) for k in sizes}
        if table == "independent_mask":  # the paper's patience for the smaller cohort
            same_sizes["patience"] = 25
        assert got == dataclasses.replace(mask_preset(preset), **same_sizes), table


def test_a_mask_table_may_name_a_preset_and_a_wrong_name_is_refused(tmp_path):
    from neuromask.config import ConfigError

    good = tmp_path / "good.toml"
    good.write_text('[data]\nsynthetic = true\n[mask]\npreset = "voxel"\nmax_epochs = 7\n')
    config, _ = load_study_config(good)
    assert (config.mask.area, config.mask.upsample, config.mask.max_epochs) == (0.0, 1, 7)
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nsynthetic = true\n[session_mask]\npreset = "sesion"\n')
    with pytest.raises(ConfigError, match="'sesion' is not a mask preset; valid: group"):
        load_study_config(bad)
    bad.write_text('[data]\nsynthetic = true\n[mask]\npreset = ["paper"]\n')
    with pytest.raises(ConfigError, match="is not a mask preset"):
        load_study_config(bad)


def test_settings_added_later_keep_the_mask_folders_of_earlier_studies():
    """A study started before ``larger_area_epochs``, ``larger_area_gain``,
    ``larger_area_skip_above`` and ``convolution`` existed
    names its mask folders as then (the keys below are those of the version before
    them), so it resumes into them; any other value of any names a new folder, the
    ladder's settings only for masks with larger areas, since they act on nothing else."""
    import dataclasses

    from neuromask.explain import MaskConfig, mask_preset
    from neuromask.studies.workspace import settings_key

    round_23 = mask_preset("group-r23")  # the defaults of rounds 18 to 23
    round_17 = dataclasses.replace(round_23, larger_area_skip_above=0.0)
    before = dataclasses.replace(round_17, larger_area_epochs=0)  # round 16's defaults
    assert settings_key(before) == "a3a99451bbc5"
    assert settings_key(round_17) == "16ba5445594a"  # round 17: larger_area_epochs 10
    assert settings_key(round_23) == "2373eba75b1b"  # round 18: the skip at 0.1
    assert settings_key(MaskConfig()) != settings_key(round_23)  # round 24: F12
    assert settings_key(mask_preset("group-sufficient")) == "7b743542330d"  # unchanged
    assert settings_key(mask_preset("session")) == "9d401d816399"
    assert settings_key(mask_preset("paper")) == "486b7d8529b0"
    changes = (
        {"larger_area_epochs": 5},
        {"larger_area_gain": 0.1},
        {"larger_area_skip_above": 0.2},
    )
    for change in changes:
        assert settings_key(dataclasses.replace(before, **change)) != "a3a99451bbc5"
        for one_area in (mask_preset("session"), mask_preset("paper"), mask_preset("voxel")):
            key = settings_key(one_area)
            assert settings_key(dataclasses.replace(one_area, **change)) == key
    # round 20's kernel setting acts on every mask: its new value names a new folder
    for config in (round_23, mask_preset("session"), mask_preset("paper")):
        assert settings_key(dataclasses.replace(config, convolution="onednn")) != settings_key(
            config
        )


def test_session_similarity_arithmetic():
    index = pd.DataFrame(
        {
            "participant_id": ["a", "a", "b", "b", "c"],
            "session_id": ["ses-M006", "ses-M000", "ses-M000", "ses-M012", "ses-M000"],
        }
    )
    vectors = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=float)
    table = session_similarity(index, vectors).set_index("metric")
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    intra = np.mean([cos(vectors[0], vectors[1]), cos(vectors[2], vectors[3])])
    # Baselines: a -> row 1 (M000), b -> row 2, c -> row 4.
    inter = np.mean(
        [cos(vectors[1], vectors[2]), cos(vectors[1], vectors[4]), cos(vectors[2], vectors[4])]
    )
    assert table.loc["roi_similarity", "intra_subject"] == pytest.approx(intra, abs=1e-9)
    assert table.loc["roi_similarity", "inter_subject"] == pytest.approx(inter, abs=1e-9)
    assert table.loc["roi_similarity", "subjects_intra"] == 2


def test_cross_cohort_prob_cnn_masks_each_cohort_with_the_other_cohorts_mask(finished_study):
    """The paper's §3.2.1: the ADNI-like images under the independent cohort's mask and the
    independent images under the ADNI-like mask. (An earlier version scored the ADNI-like
    images in both directions, so one direction was the ADNI mask on its own images.)"""
    from neuromask.metrics.prob_cnn import masked_probability
    from neuromask.studies.workspace import Workspace

    out = finished_study["out"]
    config, _ = load_study_config(finished_study["config"])
    ws = Workspace(out, config, progress=False, device="cpu")
    cohorts = pd.read_csv(out / "group" / "cohorts.tsv", sep="\t")
    tops = pd.read_csv(out / "group" / "top_rois.tsv", sep="\t").set_index(["split", "cohort"])
    model, adni_images = ws.model_and_images(0, 0)
    independent = ws.independent_images(0, 0)
    adni_mask = ws.load_mask(tops.loc[(0, "adni"), "mask_file"])
    aibl_mask = ws.load_mask(tops.loc[(0, "aibl"), "mask_file"])
    mu = ws.fill(0, 0, config.mask)  # the default mask's healthy reference, from model 0's CN
    row = cohorts.iloc[0]
    expected = masked_probability(model, independent, adni_mask, mu=mu)
    self_term = masked_probability(model, adni_images, adni_mask, mu=mu)
    assert abs(expected - self_term) > 1e-4, "the fixture cannot tell the two directions apart"
    assert row["aibl_images_adni_mask"] == pytest.approx(expected, abs=1e-5)
    assert row["adni_images_aibl_mask"] == pytest.approx(
        masked_probability(model, adni_images, aibl_mask, mu=mu), abs=1e-5
    )
    assert row["prob_cnn"] == pytest.approx(
        (row["aibl_images_adni_mask"] + row["adni_images_aibl_mask"]) / 2, abs=1e-6
    )


def test_independent_cohort_uses_one_baseline_session_per_subject(finished_study, tmp_path):
    from neuromask.io.participants import read_participants, session_order
    from neuromask.studies.workspace import Workspace

    config, _ = load_study_config(finished_study["config"])
    every = config.data.split_dir + "/split-0/train.tsv"
    sessions = read_participants(every)
    assert sessions["participant_id"].duplicated().any(), "the table needs repeated subjects"
    text = finished_study["config"].read_text()
    other = tmp_path / "study.toml"
    other.write_text(text.replace(str(config.data.independent_tsv), every))
    config, _ = load_study_config(other)
    caps, tsv = Workspace(tmp_path / "out", config).independent_baseline()
    baseline = read_participants(tsv)
    assert str(caps) == str(config.data.independent_caps)
    assert not baseline["participant_id"].duplicated().any()
    assert set(baseline["participant_id"]) == set(sessions["participant_id"])
    first = sessions.groupby("participant_id")["session_id"].agg(
        lambda s: min(s, key=session_order)
    )
    assert dict(zip(baseline["participant_id"], baseline["session_id"], strict=True)) == dict(first)
    # The study itself evaluated its independent cohort on that kind of table.
    used = read_participants(finished_study["out"] / "data" / "independent_baseline.tsv")
    assert not used["participant_id"].duplicated().any()


def test_a_study_may_use_the_healthy_reference_and_fills_with_each_models_cn_sessions(
    finished_study,
):
    import dataclasses

    from neuromask.explain.reference import HealthyReference
    from neuromask.studies.config import study_config_from_mapping
    from neuromask.studies.workspace import Workspace

    parsed = study_config_from_mapping(
        {"data": {"synthetic": True}, "mask": {"reference": "healthy"}}, "study.toml"
    )
    assert parsed.mask.reference == "healthy"
    config, _ = load_study_config(finished_study["config"])
    ws = Workspace(finished_study["out"], config, progress=False, device="cpu")
    constant = dataclasses.replace(config.mask, reference="constant")
    assert ws.fill(0, 0, constant) == config.mask.mu  # the constant reference: mu
    healthy = config.mask  # the default
    assert healthy.reference == "healthy"
    fill = ws.fill(0, 0, healthy)
    assert isinstance(fill, HealthyReference) and fill is ws.fill(0, 0, healthy)
    _, images = ws.model_and_images(0, 0)
    assert fill.grid == tuple(images.shape[2:])
    train = pd.read_csv(ws.split_dir / "split-0" / "train.tsv", sep="\t")
    assert len(fill) == train.loc[train["diagnosis"] == "CN", "participant_id"].nunique()
