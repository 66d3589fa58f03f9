"""The contract on data the template has never seen: column types and roles, schema inference
with its reasons, the STL building blocks, and refusing what cannot be served."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer

from sail_pipelines.contract import stl
from sail_pipelines.contract.infer import infer, infer_column, infer_task
from sail_pipelines.contract.ranges import Limits, beyond, training_ranges
from sail_pipelines.contract.schema import RecordError, check_record, check_value, parse_schema
from sail_pipelines.contract.transformers import CalendarFeatures, OutlierClipper
from sail_pipelines.errors import SailError

SCHEMA = parse_schema(
    {
        "columns": [
            {"name": "id", "type": "text", "role": "ignore"},
            {"name": "when", "type": "datetime", "nullable": True},
            {"name": "member", "type": "bool"},
            {"name": "city", "type": "category", "values": ["Lisbon", "Porto"], "other": True},
            {"name": "size", "type": "category", "values": ["S", "M"]},
            {"name": "age", "type": "int"},
            {"name": "tier", "type": "category", "role": "target", "values": ["gold", "silver"]},
        ]
    }
)
GOOD = {
    "id": "C1",
    "when": "2024-05-01T13:45:00Z",
    "member": True,
    "city": "Faro",
    "size": "S",
    "age": 40,
}


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"columns": [{"name": "t", "type": "float", "role": "target"}]},
            "no column has role: feature",
        ),
        (
            {"columns": [{"name": "x", "type": "float"}]},
            "exactly one column needs role: target, found 0",
        ),
        (
            {
                "columns": [
                    {"name": "x", "type": "float", "role": "target"},
                    {"name": "y", "type": "int", "role": "target"},
                ]
            },
            "found 2",
        ),
        (
            {
                "columns": [
                    {"name": "x", "type": "text"},
                    {"name": "t", "type": "int", "role": "target"},
                ]
            },
            "text column 'x' cannot be a feature",
        ),
        ({"columns": [{"name": "x", "type": "float", "role": "label"}]}, "has role 'label'"),
        ({"columns": [{"name": "x", "type": "date"}]}, "has type 'date'"),
        (
            {
                "columns": [
                    {"name": "x", "type": "float"},
                    {"name": "x", "type": "int", "role": "target"},
                ]
            },
            "['x'] repeat",
        ),
        (
            {
                "columns": [
                    {"name": "x", "type": "float"},
                    {"name": "t", "type": "datetime", "role": "target"},
                ]
            },
            "target 't' cannot be of type datetime",
        ),
        ({"features": []}, "expected a 'columns' list"),
    ],
)
def test_bad_schemas_are_refused_naming_the_column(raw, message):
    with pytest.raises(SailError, match=re.escape(message)):
        parse_schema(raw)


def test_the_older_target_and_features_form_still_reads():
    schema = parse_schema(
        {
            "target": {"name": "y", "type": "int", "values": [0, 1]},
            "features": [{"name": "x", "type": "float"}],
        }
    )
    assert schema.target.role == "target" and schema.feature_names == ["x"]
    assert parse_schema(schema.to_dict()) == schema


def test_a_record_keeps_features_and_drops_ignored_fields():
    assert check_record(SCHEMA, GOOD) == {k: v for k, v in GOOD.items() if k != "id"}
    # ignored fields are optional
    assert check_record(SCHEMA, {k: v for k, v in GOOD.items() if k != "id"})
    with pytest.raises(RecordError, match="unexpected field") as err:
        check_record(SCHEMA, {**GOOD, "colour": "red"})
    assert err.value.field == "colour"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("member", "yes", "must be true or false"),
        ("member", 1, "must be true or false"),
        ("when", "01/05/2024", "ISO 8601"),
        ("when", 20240501, "must be a string"),
        ("size", "XL", "must be one of"),
        ("city", ["Faro"], "must be one of"),
        ("age", 1.5, "whole number"),
        ("age", 2**60, "from -2\\^53 to 2\\^53"),  # exact as a float, but not every neighbour is
        ("age", -(2**53) - 2, "from -2\\^53 to 2\\^53"),
        ("age", float("inf"), "finite"),
        ("id", {"a": 1}, "single value"),
    ],
)
def test_each_type_refuses_what_it_cannot_take(field, value, message):
    with pytest.raises(RecordError, match=message) as err:
        check_record(SCHEMA, {**GOOD, field: value})
    assert err.value.field == field


def test_other_bucket_and_nullable_dates_are_accepted():
    assert check_value(SCHEMA.features[2], "Somewhere") == "Somewhere"
    assert check_value(SCHEMA.features[0], None) is None


def test_prepare_gives_the_stl_one_dtype_per_kind():
    frame = pd.DataFrame([GOOD, {**GOOD, "member": None, "when": None, "age": 3}])
    prepared = SCHEMA.prepare(frame)
    assert list(prepared.columns) == SCHEMA.feature_names
    assert prepared["member"].tolist()[0] == 1.0 and np.isnan(prepared["member"].tolist()[1])
    assert prepared["age"].dtype == float and prepared["when"].dtype == object
    assert isinstance(prepared["when"].tolist()[1], float)  # NaN, which imputers recognise


def test_inference_sets_aside_what_a_model_cannot_use_and_says_why():
    rows = 200
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "row": range(rows),
            "key": [f"K{i}" for i in range(rows)],
            "comment": [
                "a rather long free text comment that goes on and on " + str(i) for i in range(rows)
            ],
            "empty": [None] * rows,
            "constant": [3] * rows,
            "day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "flag": rng.random(rows) < 0.5,
            "count": rng.integers(0, 9, rows),
            "amount": rng.normal(size=rows),
            "shop": ["A"] * 100 + ["B"] * 90 + [f"rare{i}" for i in range(10)],
            "label": rng.choice(["x", "y", "z"], rows),
        }
    )
    inferred = infer(frame, "label")
    by_name = {c.name: c for c in inferred.schema.columns}
    assert {c.name for c in inferred.schema.ignored} == {
        "row",
        "key",
        "comment",
        "empty",
        "constant",
    }
    assert by_name["row"].reason.startswith("identifier") and by_name["comment"].reason.startswith(
        "free text"
    )
    assert by_name["day"].type == "datetime" and by_name["flag"].type == "bool"
    assert by_name["count"].type == "int" and by_name["amount"].type == "float"
    assert by_name["shop"].values == ("A", "B") and by_name["shop"].other
    assert inferred.task == "classification" and by_name["label"].values == ("x", "y", "z")


@pytest.mark.parametrize(
    "values, task",
    [
        ([0, 1] * 50, "classification"),
        (list(range(30)) * 3, "regression"),
        ([0.5, 1.25, 3.0] * 30, "regression"),
        (["a", "b", "c"] * 30, "classification"),
    ],
)
def test_task_follows_the_target(values, task):
    assert infer_task(pd.Series(values), "y")[0] == task


@pytest.mark.parametrize(
    "frame, target, task, message",
    [
        (
            pd.DataFrame({"x": [1, 2], "y": [0, 1]}),
            "label",
            None,
            "target column 'label' is not in the data",
        ),
        (pd.DataFrame({"x": range(30), "y": [1] * 30}), "y", None, "target 'y' has one class (1)"),
        (
            pd.DataFrame({"id": [f"r{i}" for i in range(30)], "y": [0, 1] * 15}),
            "y",
            None,
            "no usable feature",
        ),
        (
            pd.DataFrame({"x": range(30), "y": ["a", "b"] * 15}),
            "y",
            "regression",
            "cannot be a regression target",
        ),
        (pd.DataFrame({"x": range(30), "y": [None] * 30}), "y", None, "has no values"),
    ],
)
def test_files_that_cannot_train_are_refused_in_one_line(frame, target, task, message):
    with pytest.raises(SailError, match=re.escape(message)) as err:
        infer(frame, target, task)
    assert "\n" not in str(err.value)


def test_calendar_features_add_the_hour_only_when_times_vary():
    dates = pd.DataFrame({"d": ["2024-03-01", "2024-12-31", None]})
    fitted = CalendarFeatures().fit(dates)
    assert list(fitted.get_feature_names_out()) == [
        "d_year",
        "d_month",
        "d_dayofweek",
        "d_dayofyear",
    ]
    out = fitted.transform(dates)
    assert out[0].tolist() == [2024, 3, 4, 61] and np.isnan(out[2]).all()
    times = pd.DataFrame({"d": ["2024-03-01T10:00:00", "2024-03-01T23:30:00+02:00"]})
    assert CalendarFeatures().fit(times).transform(times)[:, -1].tolist() == [10, 21]


def test_clipper_bounds_sentinels_and_leaves_ordinary_values():
    values = np.r_[np.random.default_rng(1).normal(size=500), 1e308, -1e308][:, None]
    clipper = OutlierClipper().fit(values)
    out = clipper.transform(values)
    assert np.isfinite(out).all() and out.max() < 20 and out.min() > -20
    assert np.array_equal(out[:500], values[:500])


def test_non_finite_stl_output_names_the_field():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 0.0]})
    log = ColumnTransformer(
        [("log", FunctionTransformer(np.log, feature_names_out="one-to-one"), ["a", "b"])]
    )
    schema = parse_schema(
        {
            "columns": [
                {"name": "a", "type": "float"},
                {"name": "b", "type": "float"},
                {"name": "y", "type": "int", "role": "target"},
            ]
        }
    )
    with pytest.raises(stl.NonFiniteFeatures) as err:
        stl.transform(log.fit(frame), schema, frame)
    assert err.value.field == "b" and err.value.rows == [1]


def test_values_beyond_the_training_range_are_found():
    schema = parse_schema(
        {
            "columns": [
                {"name": "a", "type": "float"},
                {"name": "y", "type": "int", "role": "target"},
            ]
        }
    )
    ranges = training_ranges(
        schema,
        {
            "training_profile": {"columns": {"a": {"min": 0.0, "max": 10.0}}},
            "serving": {"range_margin": 0.1},
        },
    )
    assert ranges == {"a": (-1.0, 11.0)}
    found = beyond({"a": [5.0, 1e308, None]}, Limits(ranges, {}, {}))
    assert [(b.record, b.field) for b in found] == [(1, "a")]


def test_a_builder_without_datetime_is_refused_when_the_schema_has_dates(tmp_path):
    (tmp_path / "old_stl.py").write_text("def build(numeric, categorical):\n    return None\n")
    with pytest.raises(SailError, match="takes no 'datetime' argument"):
        stl.build("old_stl:build", SCHEMA, tmp_path)
    assert infer_column("x", pd.Series([1.5, None, 2.5])).nullable


def _served(tmp_path, out_of_range, transformer=None):
    """A small signed bundle with a training profile, served by the real Flask app."""
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    from sail_pipelines.contract.validate import profile_frame
    from sail_pipelines.inference.serve import create_app
    from sail_pipelines.integrity.bundle import (
        MODEL,
        TRANSFORMER,
        dump_object,
        load_bundle,
        write_bundle,
    )
    from sail_pipelines.integrity.signing import generate

    schema = parse_schema(
        {
            "columns": [
                {"name": "a", "type": "float"},
                {"name": "b", "type": "float"},
                {"name": "y", "type": "float", "role": "target"},
            ]
        }
    )
    frame = pd.DataFrame({"a": np.linspace(1, 10, 40), "b": np.linspace(2, 5, 40)})
    frame["y"] = frame.a * 2 + frame.b
    transformer = (transformer or ColumnTransformer([("s", StandardScaler(), ["a", "b"])])).fit(
        frame[["a", "b"]]
    )
    model = LinearRegression().fit(transformer.transform(frame[["a", "b"]]), frame.y)
    key = generate()
    metadata = {
        "task": "regression",
        "schema": schema.to_dict(),
        "name": "lr",
        "training_profile": profile_frame(schema, frame, "h"),
        "serving": {"out_of_range": out_of_range, "range_margin": 0.1},
    }
    write_bundle(
        tmp_path / "b",
        {MODEL: dump_object(model), TRANSFORMER: dump_object(transformer)},
        metadata,
        key,
    )
    bundle = load_bundle(tmp_path / "b", key)
    return bundle, create_app(bundle).test_client()


def test_out_of_range_values_are_flagged_or_refused_as_configured(tmp_path):
    from sail_pipelines.inference.predict import predict_frame

    bundle, client = _served(tmp_path, "flag")
    answer = client.post("/predict", json=[{"a": 5.0, "b": 3.0}, {"a": 1e308, "b": 3.0}])
    assert answer.status_code == 200
    assert [(f["record"], f["field"]) for f in answer.get_json()["out_of_range"]] == [(1, "a")]
    batch = predict_frame(
        bundle,
        pd.DataFrame({"a": [5.0, 1e308], "b": [3.0, 3.0]}, index=pd.Index([2, 3], name="line")),
    )
    assert batch["out_of_range"].tolist() == ["", "a"]

    bundle, client = _served(tmp_path / "refuse", "refuse")
    refused = client.post("/predict", json=[{"a": 5.0, "b": 3.0}, {"a": 5.0, "b": -1e308}])
    assert (
        refused.status_code == 422
        and refused.get_json()["field"] == "b"
        and refused.get_json()["record"] == 1
    )
    with pytest.raises(SailError, match=r"^line 3: 'b' = -1e\+308 is outside the training range"):
        predict_frame(
            bundle,
            pd.DataFrame(
                {"a": [5.0, 5.0], "b": [3.0, -1e308]}, index=pd.Index([2, 3], name="line")
            ),
        )
    assert client.post("/predict", json={"a": 5.0, "b": 3.0}).status_code == 200


def test_an_input_the_stl_makes_non_finite_is_a_422_naming_the_field(tmp_path):
    log = ColumnTransformer(
        [("log", FunctionTransformer(np.log, feature_names_out="one-to-one"), ["a", "b"])]
    )
    bundle, client = _served(tmp_path, "flag", log)
    answer = client.post("/predict", json={"a": 5.0, "b": 0.0})
    assert answer.status_code == 422 and answer.get_json()["field"] == "b"
    assert client.post("/predict", json={"a": 5.0, "b": 3.0}).status_code == 200


def test_a_batch_reads_text_columns_as_text_whatever_their_cells_look_like(tmp_path):
    """A batch whose string category holds only digits in this file ("0", as weather's `precip`
    does most days) reaches the model as the strings it was trained on; numbers stay numbers,
    and an empty cell is still missing."""
    from sail_pipelines.contract.data import iter_table

    schema = parse_schema(
        {
            "columns": [
                {"name": "y", "type": "float", "role": "target"},
                {"name": "precip", "type": "category", "values": ["0", "T", "0.02"]},
                {"name": "day", "type": "datetime"},
                {"name": "zip", "type": "text", "role": "ignore"},
                {"name": "wind", "type": "float"},
            ]
        }
    )
    path = tmp_path / "batch.csv"
    path.write_text("y,precip,day,zip,wind\n1,0,2020-01-01,01234,3\n2,,2020-01-02,01235,\n")
    [chunk] = list(iter_table(path, 10, schema))
    assert chunk["precip"].iloc[0] == "0" and pd.isna(chunk["precip"].iloc[1])
    assert list(chunk["zip"]) == ["01234", "01235"]
    assert chunk["wind"].iloc[0] == 3.0 and pd.isna(chunk["wind"].iloc[1])
    [untyped] = list(iter_table(path, 10))  # without the schema, pandas guesses (the old way)
    assert untyped["precip"].iloc[0] == 0
