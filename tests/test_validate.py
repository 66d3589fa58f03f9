"""The data contract: each check is driven to fail, and the report names columns and values."""

import numpy as np
import pandas as pd
import pytest

from sail_pipelines.config import ValidationConfig
from sail_pipelines.contract.schema import parse_schema
from sail_pipelines.contract.validate import check, profile_frame

SCHEMA = parse_schema(
    {
        "target": {"name": "y", "type": "int", "values": [0, 1]},
        "features": [
            {"name": "x", "type": "float"},
            {"name": "n", "type": "int"},
            {"name": "c", "type": "category", "values": ["a", "b"]},
        ],
    }
)


class P:  # the two Params fields validate reads
    task = "classification"
    validation = ValidationConfig(
        range_margin=0.1, max_null_rate=0.05, max_mean_shift=0.5, max_std_ratio=2.0, min_rows=50
    )


def frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(5, 15, n),
            "n": rng.integers(0, 5, n),
            "c": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def stored():
    profile = profile_frame(SCHEMA, frame(), "h0")
    return {"reference": profile, "last": profile}


def problems(df, stored=None):
    return check(P, SCHEMA, df, "h1", stored).problems


def test_clean_data_passes_and_profiles(stored):
    outcome = check(P, SCHEMA, frame(seed=1), "h1", stored)
    assert outcome.problems == [] and outcome.profile["columns"]["x"]["mean"] == pytest.approx(
        10, abs=0.5
    )


def test_missing_and_unexpected_columns():
    df = frame().drop(columns=["n"]).assign(extra=1)
    assert problems(df) == [
        "missing column(s): n",
        "unexpected column(s) not in contracts/schema.yaml: extra (add them there, with role: "
        "ignore to keep them out of the model)",
    ]


def test_wrong_type_names_column_row_and_value():
    df = frame().astype({"x": object})
    df.loc[7, "x"] = "oops"
    [problem] = problems(df)
    assert problem.startswith("x: non-numeric") and "'oops' (row 7)" in problem


def test_fraction_in_int_column():
    df = frame()
    df["n"] = df["n"].astype(float)
    df.loc[3, "n"] = 2.5
    assert any(p.startswith("n: non-integer") and "2.5" in p for p in problems(df))


def test_null_in_non_nullable_column():
    df = frame()
    df.loc[[4, 9], "x"] = np.nan
    assert any(p.startswith("x: 2 null value(s)") and "row 4, row 9" in p for p in problems(df))


def test_unknown_category_and_label():
    df = frame()
    df.loc[5, "c"] = "zzz"
    df.loc[6, "y"] = 7
    found = problems(df)
    assert any(p.startswith("c: value(s) outside") and "'zzz' (row 5)" in p for p in found)
    assert any(p.startswith("y: value(s) outside") and "7 (row 6)" in p for p in found)


def test_value_beyond_reference_range_with_margin(stored):
    df = frame(seed=1)
    df.loc[11, "x"] = 1000.0
    assert any(
        p.startswith("x: value(s) above the reference maximum") and "1000.0 (row 11)" in p
        for p in problems(df, stored)
    )


def test_sudden_shift_inside_the_range_is_flagged(stored):
    """First-derivative limit: every value is within min/max, but the mean jumped."""
    ref = stored["reference"]["columns"]["x"]
    df = frame(seed=1)
    df["x"] = np.clip(df["x"] + 1.5 * ref["std"], ref["min"], ref["max"])
    found = problems(df, stored)
    assert any(p.startswith("x: mean moved") for p in found)
    assert not any("reference maximum" in p for p in found)


def test_too_few_rows():
    assert any("only 10 labelled rows" in p for p in problems(frame(n=10)))


def test_single_class_target():
    assert any("at least two classes" in p for p in problems(frame().assign(y=1)))


def test_batch_input_is_checked_by_the_same_rules():
    from sail_pipelines.contract.schema import check_frame
    from sail_pipelines.errors import SailError

    df = frame().astype({"x": object}).drop(columns=["y"]).assign(id=1)
    assert list(check_frame(SCHEMA, df).columns) == ["x", "n", "c"]  # extra columns may ride along
    df.loc[2, "x"] = "abc"
    df.loc[8, "c"] = "q"
    with pytest.raises(
        SailError, match=r"x: non-numeric value\(s\): 'abc' \(row 2\).*c: value\(s\) outside"
    ):
        check_frame(SCHEMA, df)
    with pytest.raises(SailError, match="missing 1 column"):
        check_frame(SCHEMA, df.drop(columns=["n"]))


def test_rows_are_named_by_their_line_in_the_file(tmp_path):
    from sail_pipelines.contract.data import read_table

    df = frame()
    df.loc[10, "c"] = "zzz"  # the 11th data row: line 12 of the file, after the header
    df.loc[3, "x"] = np.nan
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    found = problems(read_table(path))
    assert any("'zzz' (line 12)" in p for p in found), found
    assert any("x: 1 null value(s)" in p and "line 5" in p for p in found), found


def test_missing_labels_are_allowed_up_to_the_limit():
    df = frame().astype({"y": float})
    df.loc[:19, "y"] = np.nan  # 20 of 200 rows: 10%
    assert problems(df) == []
    df.loc[:59, "y"] = np.nan  # 60 of 200: 30%, above the default 20%
    assert any(p.startswith("y: 60 of 200 rows have no label (30.0%)") for p in problems(df))


def test_ignored_columns_may_come_along_but_unknown_ones_may_not():
    schema = parse_schema(
        {
            "columns": [
                {"name": "x", "type": "float"},
                {"name": "n", "type": "int"},
                {"name": "c", "type": "category", "values": ["a", "b"]},
                {"name": "y", "type": "int", "role": "target", "values": [0, 1]},
                {"name": "id", "type": "text", "role": "ignore"},
            ]
        }
    )
    df = frame()
    assert check(P, schema, df, "h", None).problems == []  # the ignored column may be absent
    assert (
        check(P, schema, df.assign(id=[f"r{i}" for i in range(len(df))]), "h", None).problems == []
    )
    assert (
        check(P, schema, df.assign(other=1), "h", None)
        .problems[0]
        .startswith("unexpected column(s)")
    )
