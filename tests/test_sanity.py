"""Sanity checks of explanations (Adebayo et al. 2018) and the methods side by side."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.explain import mask_preset
from neuromask.jobs import sanity, sanity_maps
from neuromask.jobs.sanity import (
    SanityConfig,
    cascade_layers,
    cosine,
    inter_subject_similarity,
    randomised_copy,
    run_sanity,
    spearman,
)
from neuromask.models.cnn import CNN3D, CNNConfig
from neuromask.train.evaluate import load_trained_model

pytest.importorskip("captum")


def small_cnn():
    torch.manual_seed(0)
    config = CNNConfig(
        n_blocks=2, first_filters=2, max_filters=4, sub_blocks=(1, 1), fc_layers=(6,), dropout=0.0
    )
    return CNN3D(config, (8, 8, 8)).eval()


def test_cascade_runs_from_the_classifier_down_with_each_convolutions_batchnorm():
    model = small_cnn()
    layers = cascade_layers(model)
    assert [name for name, _ in layers] == [
        "classifier.4",
        "classifier.2",
        "features.4",
        "features.0",
    ]
    assert [type(m).__name__ for m in layers[2][1]] == ["Conv3d", "BatchNorm3d"]


def test_randomised_copy_changes_exactly_the_top_layers_and_leaves_the_model_alone():
    model = small_cnn()
    model.features[1].running_mean += 0.5  # as after training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    same = randomised_copy(model, 0)
    x = torch.rand(2, 1, 8, 8, 8)
    torch.testing.assert_close(same(x), model(x))
    twin = randomised_copy(model, 2, seed=3)
    changed = {k for k, v in twin.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {
        "classifier.4.weight",
        "classifier.4.bias",
        "classifier.2.weight",
        "classifier.2.bias",
    }
    for k, v in model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    again = randomised_copy(model, 2, seed=3)
    for k, v in twin.state_dict().items():  # same seed, same copy
        assert torch.equal(v, again.state_dict()[k])
    full = randomised_copy(model, 4)
    assert "features.1.running_mean" in {
        k for k, v in full.state_dict().items() if not torch.equal(v, before[k])
    }
    with pytest.raises(Exception, match="n_layers"):
        randomised_copy(model, 5)


def test_similarity_helpers():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.5])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, np.zeros(3)) == 0.0  # an empty map is similar to nothing
    assert spearman(a, b) == pytest.approx(1.0)
    assert spearman(a, -b) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones(3)))
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert inter_subject_similarity(vectors) == pytest.approx((0 + 2 * 2**-0.5) / 3)
    ranks = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    # Pairs with a constant vector have no rank correlation and are left out.
    assert inter_subject_similarity(ranks, spearman) == pytest.approx(-1.0)


def quick(**overrides):
    settings = dict(
        methods=("mask", "saliency", "roi_ablation"),
        images=2,
        mask_epochs=2,
        mask_batch_size=2,
        session_epochs=3,
        session_patience=2,
        shuffled_epochs=2,
        mask_settings={"refine_epochs": 2},
    )
    return SanityConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def sanity_run(tiny_model, tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("sanity") / "out"
    result = run_sanity(
        tiny_model, out, truth=tiny_cohort.ground_truth, config=quick(), progress=False
    )
    return out, result


@pytest.mark.slow
def test_run_writes_one_row_per_method_and_the_whole_cascade(sanity_run, tiny_model, tiny_cohort):
    out, result = sanity_run
    table = pd.read_csv(out / "explainers.tsv", sep="\t")
    assert table["method"].tolist() == ["mask", "saliency", "roi_ablation"]
    for column in (
        "roi_precision_at_k",
        "voxel_auc",
        "mass_accuracy",
        "inter_subject_similarity",
        "similarity_randomised",
        "spearman_randomised",
        "similarity_shuffled",
        "passes_randomisation",
        "seconds",
        "peak_memory_mb",
    ):
        assert column in table.columns, column
    assert (table["seconds"] > 0).all()
    areas = ("deletion_auc", "insertion_auc", "road_auc", "healthy_insertion_auc")
    for area in (*areas, "healthy_deletion_auc", "healthy_road_auc"):  # mean P(AD) along a curve
        assert table[area].between(0.0, 1.0).all(), area
    cascade = pd.read_csv(out / "cascade.tsv", sep="\t")
    n_layers = len(cascade_layers(load_trained_model(tiny_model)[0]))
    assert len(cascade) == 3 * (n_layers + 2)
    trained = cascade[cascade["model"] == "trained"]
    # The trained CNN's map against itself: identical (an empty mask map has similarity 0).
    nonempty = trained[~trained["empty_map"]]
    assert np.allclose(nonempty["roi_similarity"], 1.0) and len(nonempty) >= 2
    for name in ("sanity.png", "maps.png", "settings.json", "sessions.tsv"):
        assert (out / name).stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["sanity"]["images"] == 2 and settings["cascade_layers"][0].startswith(
        "classifier"
    )
    group_mask = settings["group_mask"]  # the group masks' settings, recorded in full
    assert (group_mask["max_epochs"], group_mask["refine_epochs"]) == (2, 2)
    assert group_mask["area"] == mask_preset("group").area
    assert (out / "shuffled_cnn" / "model.safetensors").is_file()
    fit = settings["shuffled_cnn"]
    assert 0 < fit["fraction_of_labels_changed"] <= 1
    assert 0 <= fit["balanced_accuracy_on_its_shuffled_labels"] <= 1
    shuffled = json.loads((out / "shuffled_cnn" / "config.json").read_text())
    assert shuffled["shuffled_labels_of"] == str(tiny_model)
    # Relevance maps keep the data's affine.
    import nibabel as nib

    img = nib.load(out / "maps" / "trained" / "saliency.nii.gz")
    ref = nib.load(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    np.testing.assert_allclose(img.affine, ref.affine)


@pytest.mark.slow
def test_a_rerun_resumes_from_the_written_maps(sanity_run, tiny_model, tiny_cohort, monkeypatch):
    out, first = sanity_run

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished map")

    monkeypatch.setattr(sanity, "relevance_maps", fail)
    monkeypatch.setattr(sanity, "session_relevance", fail)
    again = run_sanity(
        tiny_model, out, truth=tiny_cohort.ground_truth, config=quick(), progress=False
    )
    pd.testing.assert_frame_equal(again.table, first.table)


def test_the_check_fails_a_method_blind_to_the_model_and_passes_one_that_reads_it(
    tiny_model, tmp_path, monkeypatch
):
    """Adebayo's point: an edge detector of the image looks plausible but ignores the model."""

    def image_only(method, model, images, **kwargs):
        per = images[:, 0].abs().numpy().astype(np.float64)
        per = per * (1 + np.arange(len(per)))[:, None, None, None]  # subjects differ a bit
        return per.mean(0), per

    def model_noise(method, model, images, **kwargs):
        first = next(model.parameters()).detach().flatten()
        seed = int(abs(float(first[:5].sum())) * 1e6) % 2**31
        rng = np.random.default_rng(seed)
        per = rng.random((images.shape[0], *images.shape[2:])) ** 8
        return per.mean(0), per

    config = quick(methods=("saliency",), shuffled=False)
    monkeypatch.setattr(sanity, "relevance_maps", image_only)
    blind = run_sanity(tiny_model, tmp_path / "blind", config=config, progress=False)
    assert blind.table.loc[0, "similarity_randomised"] == pytest.approx(1.0)
    assert not blind.table.loc[0, "passes_randomisation"]
    monkeypatch.setattr(sanity, "relevance_maps", model_noise)
    reading = run_sanity(tiny_model, tmp_path / "reading", config=config, progress=False)
    assert reading.table.loc[0, "similarity_randomised"] < 0.99
    assert "roi_precision_at_k" not in reading.table.columns  # no truth given


def test_the_group_masks_settings_come_from_the_preset_the_epochs_and_the_mask_settings():
    assert SanityConfig().group_mask_config() == mask_preset(
        "group", max_epochs=20, batch_size=4, seed=0
    )  # what sanity ran before mask_settings existed
    config = SanityConfig(mask_epochs=7, seed=3, mask_settings={"refine_epochs": 3})
    assert config.group_mask_config() == mask_preset(
        "group", max_epochs=7, batch_size=4, seed=3, refine_epochs=3
    )
    paper = SanityConfig(mask_epochs=7, mask_settings={"preset": "paper"}).group_mask_config()
    assert paper == mask_preset("paper", max_epochs=7, batch_size=4, seed=0)
    own = SanityConfig(mask_epochs=7, mask_settings={"preset": "paper", "max_epochs": 9})
    assert own.group_mask_config().max_epochs == 9  # the settings' own keys win


def test_config_and_command_errors(tiny_model, tmp_path):
    with pytest.raises(Exception, match="unknown lime"):
        SanityConfig(methods=("mask", "lime"))
    with pytest.raises(Exception, match="images must be at least 2"):
        SanityConfig(images=1)
    result = CliRunner().invoke(
        cli, ["sanity", str(tiny_model), str(tmp_path / "o"), "--methods", "mask,lime"]
    )
    assert result.exit_code == 1 and "unknown lime" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["sanity", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert result.exit_code == 1 and "config.json" in result.output
    with pytest.raises(Exception, match="unknown key.*lambda9"):
        run_sanity(tiny_model, tmp_path / "o3", config=SanityConfig(mask_settings={"lambda9": 1}))
    assert not (tmp_path / "o3").exists()  # refused before any work
    for text, expected in (
        ("lambda9 = 1\n", "unknown key(s) lambda9"),
        ('preset = "gruop"\n', "preset 'gruop' is not a mask preset"),
        ("refine_epochs = -1\n", "refine_epochs"),
        ("refine_epochs = [\n", "not valid TOML"),
    ):
        bad = tmp_path / "bad_mask.toml"
        bad.write_text(text)
        result = CliRunner().invoke(
            cli, ["sanity", str(tiny_model), str(tmp_path / "o4"), "--mask-config", str(bad)]
        )
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert expected in result.output and str(bad) in " ".join(result.output.split())
        assert not (tmp_path / "o4").exists()


def test_sanity_command_prints_the_table(tiny_model, tiny_cohort, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "sanity",
            str(tiny_model),
            str(tmp_path / "cli"),
            "--methods",
            "saliency,grad_cam",
            "--images",
            "2",
            "--no-shuffled",
            "--truth",
            str(tiny_cohort.ground_truth),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Explanations of" in result.output and "a method passes below" in " ".join(
        result.output.split()
    )
    table = pd.read_csv(tmp_path / "cli" / "explainers.tsv", sep="\t")
    assert "similarity_shuffled" not in table.columns and len(table) == 2


@pytest.mark.slow
def test_the_baselines_reference_is_checked_used_and_recorded(tiny_model, tmp_path, monkeypatch):
    with pytest.raises(Exception, match="baseline_reference must be one of mu, healthy"):
        SanityConfig(baseline_reference="zero")
    assert not SanityConfig(methods=("mask", "saliency")).fills_differ
    assert not SanityConfig(
        methods=("mask", "occlusion"), mask_settings={"preset": "group-mu"}
    ).fills_differ
    result = CliRunner().invoke(
        cli, ["sanity", str(tiny_model), str(tmp_path / "bad"), "--baseline-reference", "zero"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    seen = []
    real = sanity_maps.attribute

    def spy(method, model, images, target=1, **kwargs):
        seen.append((method, images.clone(), kwargs.get("reference")))
        return real(method, model, images, target, **kwargs)

    monkeypatch.setattr(sanity_maps, "attribute", spy)
    for reference in ("healthy", "mu"):
        seen.clear()
        out = tmp_path / reference
        config = quick(methods=("roi_ablation", "saliency"), shuffled=False)
        config.baseline_reference = reference
        run_sanity(tiny_model, out, config=config, progress=False)
        job = json.loads((out / "sanity_job.json").read_text())["sanity"]
        # "mu" is left out of the marker: folders of earlier versions still resume
        assert job.get("baseline_reference") == (None if reference == "mu" else "healthy")
        recorded = json.loads((out / "settings.json").read_text())["sanity"]
        assert recorded["baseline_reference"] == reference  # written in full next to results
        for method, images, fill in seen:
            if method == "saliency" or reference == "mu":
                assert fill is None
            else:  # each image's healthy version max(X, H): at least X, more somewhere
                assert fill.shape == images.shape and (fill >= images).all()
                assert (fill > images).any()
        assert {m for m, _, _ in seen} == {"roi_ablation", "saliency"}
    assert not np.allclose(
        np.load(tmp_path / "healthy" / "maps" / "trained" / "roi_ablation_rois.npy"),
        np.load(tmp_path / "mu" / "maps" / "trained" / "roi_ablation_rois.npy"),
    )


def test_the_command_says_when_the_mask_and_the_baselines_fill_differently():
    """The default group mask restores healthy tissue; baselines that remove with mu are
    flagged, unless they take the healthy reference too or the mask fills with mu."""
    assert SanityConfig(methods=("mask", "occlusion")).fills_differ
    assert not SanityConfig(
        methods=("mask", "occlusion"), baseline_reference="healthy"
    ).fills_differ
