import pandas as pd
import pytest

from neuromask.errors import MissingFileError, TableError
from neuromask.io.participants import baseline_sessions, read_participants

HEADER = "participant_id\tsession_id\tdiagnosis\tage\tsex\tsite\n"
GOOD = "sub-01\tses-M000\tAD\t71.5\tF\tA\nsub-01\tses-M006\tAD\t72\tF\tA\nsub-02\tses-M000\tCN\t70\tM\tB\n"


def write(tmp_path, text, name="p.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_table_keeps_extra_columns(tmp_path):
    df = read_participants(write(tmp_path, HEADER + GOOD))
    assert list(df.columns) == ["participant_id", "session_id", "diagnosis", "age", "sex", "site"]
    assert df["age"].tolist() == [71.5, 72.0, 70.0]


def test_missing_columns_are_listed(tmp_path):
    path = write(tmp_path, "participant_id\tsession_id\tage\nsub-01\tses-M000\t70\n")
    with pytest.raises(TableError, match=r"p\.tsv lacks the column\(s\) diagnosis, sex"):
        read_participants(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("sub-03\tses-M000\tMCI\t70\tF\tA\n", r"line 5: unknown diagnosis 'MCI'"),
        ("sub-03\tses-M000\tAD\tseventy\tF\tA\n", r"line 5: age 'seventy'"),
        ("sub-03\tses-M000\tAD\t70\tX\tA\n", r"line 5: unknown sex 'X'"),
        (
            "sub-01\tses-M006\tAD\t72\tF\tA\n",
            r"line 5: duplicate row for sub-01 ses-M006 \(first seen on line 3\)",
        ),
        (
            "sub-../x\tses-M000\tAD\t70\tF\tA\n",
            r"line 5: participant_id 'sub-../x' is not a BIDS label",
        ),
        (
            "sub-03\tses-M 000\tAD\t70\tF\tA\n",
            r"line 5: session_id 'ses-M 000' is not a BIDS label",
        ),
        ("sub-0/3\tses-M000\tAD\t70\tF\tA\n", r"participant_id 'sub-0/3'"),
    ],
)
def test_bad_rows_are_named(tmp_path, row, message):
    with pytest.raises(TableError, match=message):
        read_participants(write(tmp_path, HEADER + GOOD + row))


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="absent.tsv"):
        read_participants(tmp_path / "absent.tsv")


def test_only_id_columns_required_when_asked(tmp_path):
    df = read_participants(
        write(tmp_path, "participant_id\tsession_id\nsub-1\tses-1\n"), required=()
    )
    assert len(df) == 1


def test_baseline_is_earliest_session_by_month():
    df = pd.DataFrame(
        {
            "participant_id": ["sub-1", "sub-1", "sub-1", "sub-2"],
            "session_id": ["ses-M024", "ses-M006", "ses-M012", "ses-M036"],
        }
    )
    base = baseline_sessions(df)
    assert dict(zip(base["participant_id"], base["session_id"], strict=True)) == {
        "sub-1": "ses-M006",
        "sub-2": "ses-M036",
    }
