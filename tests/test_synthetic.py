import numpy as np
import pandas as pd
import pytest

from neuromask.data import synthetic
from neuromask.data.synthetic import SynthConfig, generate_cohort
from neuromask.errors import OutputExistsError, ParameterError
from neuromask.io.caps import gm_map_path
from neuromask.io.grid import clinica_grid
from neuromask.io.nifti import load_volume
from neuromask.io.participants import read_participants


def load_all(result):
    table = read_participants(result.participants)
    images = [
        load_volume(gm_map_path(result.caps, p, s))[0]
        for p, s in zip(table["participant_id"], table["session_id"], strict=True)
    ]
    return table, np.stack(images)


def test_grid_values_and_tables(tiny_cohort):
    table, images = load_all(tiny_cohort)
    grid = clinica_grid(6.0)
    _, image_grid = load_volume(
        gm_map_path(tiny_cohort.caps, table["participant_id"][0], table["session_id"][0])
    )
    assert image_grid.matches(grid)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert table["participant_id"].nunique() == 16
    assert set(table["diagnosis"]) == {"AD", "CN"}
    per_subject = table.groupby("participant_id").size()
    assert per_subject.between(1, 3).all()
    truth = pd.read_csv(tiny_cohort.ground_truth / "sessions.tsv", sep="\t")
    assert sorted(truth["qc_failure"].value_counts().to_dict().items()) == [
        ("block", 1),
        ("low_max", 2),
        ("none", len(table) - 3),
    ]
    atrophy, atrophy_grid = load_volume(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    assert atrophy_grid.matches(grid)
    assert atrophy.max() == pytest.approx(SynthConfig().atrophy_strength, rel=1e-6)


def test_atrophy_is_where_the_ground_truth_says(tiny_cohort):
    table, images = load_all(tiny_cohort)
    truth = pd.read_csv(tiny_cohort.ground_truth / "sessions.tsv", sep="\t")
    atrophy, _ = load_volume(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    clean = (truth["qc_failure"] == "none").to_numpy()
    inside = atrophy > 0.5 * atrophy.max()
    outside = (atrophy == 0) & (images[clean].mean(axis=0) > 0.2)
    ad = clean & (table["diagnosis"] == "AD").to_numpy()
    cn = clean & (table["diagnosis"] == "CN").to_numpy()
    ratio_inside = images[ad][:, inside].mean() / images[cn][:, inside].mean()
    ratio_outside = images[ad][:, outside].mean() / images[cn][:, outside].mean()
    assert ratio_inside < 0.85
    assert 0.95 < ratio_outside < 1.05


def test_atrophy_grows_across_sessions(tiny_cohort):
    table, images = load_all(tiny_cohort)
    truth = pd.read_csv(tiny_cohort.ground_truth / "sessions.tsv", sep="\t")
    atrophy, _ = load_volume(tiny_cohort.ground_truth / "atrophy_map.nii.gz")
    inside = atrophy > 0.5 * atrophy.max()
    table = table.assign(
        roi_gm=images[:, inside].mean(axis=1),
        severity=truth["severity"],
        failure=truth["qc_failure"],
    )
    ad = table[(table["diagnosis"] == "AD") & (table["failure"] == "none")]
    changes = [
        g.sort_values("age")["roi_gm"].iloc[-1] - g.sort_values("age")["roi_gm"].iloc[0]
        for _, g in ad.groupby("participant_id")
        if len(g) > 1
    ]
    assert len(changes) >= 2
    assert np.mean(changes) < 0
    for _, g in ad.groupby("participant_id"):
        assert g.sort_values("age")["severity"].is_monotonic_increasing


def test_same_seed_same_cohort_other_seed_other_cohort(tmp_path):
    config = SynthConfig(voxel_size=6.0, subjects_per_class=2, sessions=(1, 2), seed=5)
    a = generate_cohort(config, tmp_path / "a", progress=False)
    b = generate_cohort(config, tmp_path / "b", progress=False)
    c = generate_cohort(
        SynthConfig(voxel_size=6.0, subjects_per_class=2, sessions=(1, 2), seed=6),
        tmp_path / "c",
        progress=False,
    )
    assert a.participants.read_text() == b.participants.read_text()
    table_a, images_a = load_all(a)
    _, images_b = load_all(b)
    np.testing.assert_array_equal(images_a, images_b)
    table_c, images_c = load_all(c)
    assert table_c.shape != table_a.shape or not np.array_equal(images_a, images_c)


def test_aibl_site_effect_smooths_and_darkens_images(tmp_path):
    # 3 mm: the site's 4 mm FWHM smoothing is below the voxel size at 6 mm.
    def measures(cohort):
        config = SynthConfig(voxel_size=3.0, subjects_per_class=1, sessions=(1, 1), cohort=cohort)
        table, images = load_all(generate_cohort(config, tmp_path / cohort, progress=False))
        assert table["participant_id"].str.startswith(f"sub-{cohort.upper()}").all()
        roughness = np.mean([np.mean(np.square(np.diff(im, axis=0))) for im in images])
        return roughness, np.mean([im[im > 0].mean() for im in images])

    (rough_aibl, mean_aibl), (rough_adni, mean_adni) = measures("aibl"), measures("adni")
    assert rough_aibl < 0.7 * rough_adni
    assert mean_aibl < 0.95 * mean_adni


def test_random_rois_are_drawn_from_the_seed():
    from neuromask.io.atlas import load_aal2, roi_stem

    atlas = load_aal2(clinica_grid(6.0))
    config = SynthConfig(voxel_size=6.0, atrophy_rois=("random:3",), seed=11)
    names = synthetic.resolve_atrophy_rois(config, atlas)
    assert names == synthetic.resolve_atrophy_rois(config, atlas)
    assert len({roi_stem(n) for n in names}) == 3
    other = synthetic.resolve_atrophy_rois(SynthConfig(atrophy_rois=("random:3",), seed=12), atlas)
    assert other != names
    for seed in range(40):  # every stem resolves, the vermis and cerebellum ones included
        synthetic.resolve_atrophy_rois(SynthConfig(atrophy_rois=("random:6",), seed=seed), atlas)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"voxel_size": -1.0}, "voxel_size"),
        ({"sessions": (3, 1)}, "sessions"),
        ({"sessions": (1, 9)}, "sessions"),
        ({"cohort": "oasis"}, "cohort"),
        ({"atrophy_strength": 1.5}, "atrophy_strength"),
        ({"noise_sd": float("nan")}, "noise_sd"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        SynthConfig(**kwargs)


def test_failure_leaves_nothing_and_existing_output_is_refused(tmp_path, monkeypatch):
    config = SynthConfig(voxel_size=6.0, subjects_per_class=2, sessions=(1, 1))
    calls = {"n": 0}
    real = synthetic.save_volume

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "save_volume", flaky)
    with pytest.raises(OSError, match="disk full"):
        generate_cohort(config, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synthetic, "save_volume", real)
    generate_cohort(config, tmp_path / "out", progress=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        generate_cohort(config, tmp_path / "out", progress=False)
