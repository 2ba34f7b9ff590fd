import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuromask.data.split import SplitConfig, make_splits, write_splits
from neuromask.errors import ParameterError
from neuromask.io.participants import read_participants

CONFIG = SplitConfig(test_subjects_per_class=10, folds=4, seed=2)


@pytest.fixture(scope="module")
def sessions(tiny_split_input):
    return read_participants(tiny_split_input)


@pytest.fixture(scope="module")
def result(sessions):
    return make_splits(sessions, CONFIG)


def earliest(sessions):
    months = sessions["session_id"].str[5:].astype(int)
    return sessions.assign(m=months).sort_values("m").groupby("participant_id").head(1)


def test_test_set_is_matched_with_independent_pvalues(sessions, result):
    base = earliest(sessions)
    test_ids = set(result.test["participant_id"])
    for diagnosis in ("AD", "CN"):
        group = base[base["diagnosis"] == diagnosis]
        inside = group[group["participant_id"].isin(test_ids)]
        outside = group[~group["participant_id"].isin(test_ids)]
        assert len(inside) == 10
        p_age = stats.ttest_ind(inside["age"], outside["age"]).pvalue
        table = pd.crosstab(group["participant_id"].isin(test_ids), group["sex"]).to_numpy()
        p_sex = stats.chi2_contingency(table).pvalue
        assert p_age >= 0.8 and p_sex >= 0.8
        assert result.matching[diagnosis]["p_age"] == pytest.approx(p_age)
        assert result.matching[diagnosis]["p_sex"] == pytest.approx(p_sex)


def test_no_subject_leaks_and_sessions_are_right(sessions, result):
    base = earliest(sessions)
    test_ids = set(result.test["participant_id"])
    rest_ids = set(sessions["participant_id"]) - test_ids
    assert set(result.train_val["participant_id"]) == rest_ids
    assert len(result.train_val) == int((~sessions["participant_id"].isin(test_ids)).sum())
    # Test and validation keep the baseline session, one per subject.
    merged = result.test.merge(base, on=["participant_id", "session_id"])
    assert len(merged) == len(result.test) == result.test["participant_id"].nunique()
    seen_in_validation = []
    for train, validation in result.folds:
        train_ids, val_ids = set(train["participant_id"]), set(validation["participant_id"])
        assert not train_ids & val_ids and not train_ids & test_ids and not val_ids & test_ids
        assert train_ids | val_ids == rest_ids
        assert len(validation.merge(base, on=["participant_id", "session_id"])) == len(validation)
        assert validation["participant_id"].is_unique
        # Training keeps every session of its subjects.
        assert len(train) == int(sessions["participant_id"].isin(train_ids).sum())
        counts = validation["diagnosis"].value_counts()
        assert abs(counts["AD"] - counts["CN"]) <= 1
        seen_in_validation += list(val_ids)
    assert sorted(seen_in_validation) == sorted(rest_ids)


def test_deterministic_for_a_seed(sessions, result):
    again = make_splits(sessions, CONFIG)
    pd.testing.assert_frame_equal(again.test, result.test)
    for (a_train, a_val), (b_train, b_val) in zip(again.folds, result.folds, strict=True):
        pd.testing.assert_frame_equal(a_train, b_train)
        pd.testing.assert_frame_equal(a_val, b_val)
    other = make_splits(sessions, SplitConfig(test_subjects_per_class=10, folds=4, seed=3))
    assert set(other.test["participant_id"]) != set(result.test["participant_id"])


def test_written_files_and_summary(result, tmp_path):
    out = write_splits(result, tmp_path / "split")
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    expected = {"test.tsv", "train_val.tsv", "summary.tsv", "split.json"}
    expected |= {f"split-{k}/{n}.tsv" for k in range(4) for n in ("train", "validation")}
    assert names == expected
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    test_rows = summary[summary["set"] == "test"]
    assert test_rows["n_subjects"].tolist() == [10, 10]
    np.testing.assert_allclose(
        test_rows.set_index("diagnosis").loc["AD", "age_mean"],
        result.test.loc[result.test["diagnosis"] == "AD", "age"].mean(),
    )


def test_impossible_requests_name_the_option(sessions):
    with pytest.raises(ParameterError, match="--test-subjects-per-class: 40 AD"):
        make_splits(sessions, SplitConfig(test_subjects_per_class=40, folds=4))
    with pytest.raises(ParameterError, match="--folds"):
        make_splits(sessions, SplitConfig(test_subjects_per_class=30, folds=12))
    with pytest.raises(ParameterError, match="folds must be at least 2"):
        SplitConfig(folds=1)
