"""The compiled path: what converts, what agrees, and every way back to scikit-learn, with the
reason recorded (never a silent switch)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from conftest import TEMPLATE, TEST_KEY, ok, sail
from sail_pipelines.config import CompiledConfig
from sail_pipelines.contract.calendar import calendar, has_times
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.contract.stl import sorted_values
from sail_pipelines.inference import onnx
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

SCHEMA = Schema(
    target=Column("y", "int", values=(0, 1)),
    features=(
        Column("x", "float", nullable=True),
        Column("n", "int"),
        Column("color", "category", values=("red", "green", "blue"), nullable=True),
    ),
)


def template_transformer_for(numeric: list[str], categorical: list[str], **more):
    """The STL every generated project starts with (median/most-frequent imputers, scaler,
    one-hot, calendar features)."""
    path = next((TEMPLATE / "{{cookiecutter.project_slug}}" / "src").glob("*/transform.py"))
    spec = importlib.util.spec_from_file_location("template_transform", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_transformer(numeric=numeric, categorical=categorical, **more)


def template_transformer():
    return template_transformer_for(["x", "n"], ["color"])


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 9, size=rows),
            "color": rng.choice(["red", "green", "blue"], size=rows).astype(object),
        }
    )
    data.loc[::6, "x"] = np.nan
    data.loc[::5, "color"] = None
    return data


def columns(data: pd.DataFrame) -> dict[str, list]:
    return {c: [None if pd.isna(v) else v for v in data[c]] for c in SCHEMA.feature_names}


def sklearn_predict(transformer, model, data, classification=True):
    transformed = transformer.transform(data)
    return model.predict(transformed), model.predict_proba(transformed) if classification else None


@pytest.mark.parametrize(
    "estimator", [LogisticRegression(), HistGradientBoostingClassifier(max_iter=20)]
)
def test_nulls_and_string_categories_take_the_compiled_path(estimator):
    train = frame(300, 1)
    label = ((train.x.fillna(0) + (train.color == "red") + train.n / 8) > 0.7).astype(int)
    transformer = template_transformer().fit(train)
    model = estimator.fit(transformer.transform(train), label)
    compiled = onnx.CompiledModel(onnx.convert(transformer, model, SCHEMA, True), SCHEMA, True)
    test = frame(120, 2)  # nulls in both a number and a category column
    problem, figures = onnx.agreement(
        sklearn_predict(transformer, model, test),
        compiled.predict(columns(test)),
        CompiledConfig(),
        True,
    )
    assert problem is None, problem
    assert figures["label_mismatches"] == 0 and figures["max_probability_diff"] < 1e-4


def test_a_regressor_is_compared_relative_to_its_values():
    train, test = (frame(200, seed).fillna({"x": 0.0, "color": "red"}) for seed in (3, 4))
    target = train.x * 40 + train.n * 10
    transformer = template_transformer().fit(train)
    model = RandomForestRegressor(n_estimators=50, random_state=0).fit(
        transformer.transform(train), target
    )
    compiled = onnx.CompiledModel(onnx.convert(transformer, model, SCHEMA, False), SCHEMA, False)
    served = compiled.predict(columns(test))
    assert served[1] is None
    expected = (model.predict(transformer.transform(test)), None)
    problem, figures = onnx.agreement(expected, served, CompiledConfig(), False)
    assert problem is None and figures["max_value_diff"] < 0.02
    shifted = (served[0] + np.std(expected[0]) / 10, None)  # a tenth of the spread off
    problem, _ = onnx.agreement(expected, shifted, CompiledConfig(), False)
    assert problem == "predictions differ by up to 0.1 standard deviations (allowed 0.02)"


def test_a_category_of_numbers_travels_as_a_number():
    schema = Schema(
        Column("y", "float"),
        (Column("x", "float"), Column("sex", "category", values=(1, 2), nullable=True)),
    )
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"x": rng.normal(size=150), "sex": rng.choice([1.0, 2.0], size=150)})
    data.loc[::7, "sex"] = np.nan
    transformer = template_transformer_for(["x"], ["sex"]).fit(data)
    model = Ridge().fit(transformer.transform(data), data.x * 3 + data.sex.fillna(1.0))
    compiled = onnx.CompiledModel(onnx.convert(transformer, model, schema, False), schema, False)
    served = compiled.predict(
        {c: [None if pd.isna(v) else v for v in data[c]] for c in ("x", "sex")}
    )
    expected = (model.predict(transformer.transform(data)), None)
    assert onnx.agreement(expected, served, CompiledConfig(), False)[0] is None


def test_disagreement_beyond_the_tolerances_is_refused_with_the_numbers():
    labels, probabilities = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    moved = probabilities + np.array([[0.0, 0.0], [0.05, -0.05], [0.0, 0.0]])
    problem, figures = onnx.agreement(
        (labels, probabilities), (labels, moved), CompiledConfig(), True
    )
    assert problem == "class probabilities differ by up to 0.05 (allowed 0.02)"
    assert figures == {
        "rows": 3,
        "label_mismatches": 0,
        "max_probability_diff": pytest.approx(0.05),
    }
    flipped = np.array([0, 0, 1])
    problem, _ = onnx.agreement(
        (labels, probabilities), (flipped, probabilities), CompiledConfig(), True
    )
    assert problem == "1 of 3 labels differ (allowed 0)"
    assert (
        onnx.agreement(
            (labels, probabilities),
            (flipped, probabilities),
            CompiledConfig(max_label_mismatches=1),
            True,
        )[0]
        is None
    )


class Opaque(BaseEstimator, ClassifierMixin):
    """A model skl2onnx has no converter for."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, x):
        return np.zeros(len(x), dtype=int)


def test_what_cannot_be_converted_says_why():
    train = frame(50, 4)
    transformer = template_transformer().fit(train)
    with pytest.raises(onnx.ConversionFailed, match="skl2onnx cannot convert it: .*Opaque"):
        onnx.convert(transformer, Opaque().fit(train, np.arange(50) % 2), SCHEMA, True)
    kinds = onnx.input_kinds(
        Schema(
            SCHEMA.target,
            (
                Column("size", "category", values=(2**40 + 1, 1.5)),
                Column("color", "category", values=("", "red")),
                Column("when", "datetime"),
                Column("member", "bool"),
            ),
        )
    )
    assert kinds == {"size": "string", "color": "string", "when": "calendar", "member": "number"}
    for values in ((1, "two"), (True, False)):
        mixed = Schema(
            SCHEMA.target, (Column("x", "float"), Column("size", "category", values=values))
        )
        with pytest.raises(onnx.ConversionFailed, match="feature 'size' .*has no compiled input"):
            onnx.input_kinds(mixed)


MIXED = Schema(
    target=Column("y", "int", values=(0, 1, 2)),
    features=(
        Column("x", "float", nullable=True),
        Column("member", "bool", nullable=True),
        Column("when", "datetime", nullable=True),
        Column(
            "city", "category", values=("", "Faro", "Lisbon", "Porto"), nullable=True, other=True
        ),
        Column("size", "category", values=(1, 2, 2**40 + 1), nullable=True, other=True),
        Column("rating", "category", values=(0.5, 1.5), nullable=True),
    ),
    ignored=(Column("notes", "text", role="ignore"),),
)


def mixed_columns(rows: int, seed: int) -> dict[str, list]:
    """Request-like columns of every type, a null in each (and the oddities the compiled path
    must carry: a listed "", the NUL character, unseen categories, offsets across midnight)."""
    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 900 * 24, rows), "h")
    columns = {
        "x": rng.normal(size=rows).tolist(),
        "member": rng.choice([True, False], rows).tolist(),
        "when": [s.strftime("%Y-%m-%dT%H:%M:%S") for s in stamps],
        "city": rng.choice(["", "Faro", "Lisbon", "Porto"], rows).tolist(),
        "size": rng.choice([1, 2, 2**40 + 1], rows).tolist(),
        "rating": rng.choice([0.5, 1.5], rows).tolist(),
    }
    for name in columns:
        columns[name][:: 7 + len(name)] = [None] * len(columns[name][:: 7 + len(name)])
    odd = {
        "when": ["2024-01-01T01:00:00+05:00", "2023-12-31T23:30:00-01:00", "2024-02-29Z"[:10]],
        "city": ["\x00", "Village", ""],
        "size": [7, 2.0, 1.5],
    }
    for name, values in odd.items():
        columns[name][: len(values)] = values
    return columns


def label_of(columns: dict[str, list]) -> np.ndarray:
    x = np.nan_to_num(np.array(columns["x"], dtype=float))
    city = np.array([c == "Lisbon" for c in columns["city"]])
    return (x > 0).astype(int) + city


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=1000),
        RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0),
        HistGradientBoostingClassifier(max_iter=30, random_state=0),
    ],
    ids=["logistic", "forest", "boosting"],
)
def test_every_column_type_takes_the_compiled_path_and_agrees(estimator, tmp_path):
    """Dates (calendar features computed before the graph), booleans, categories of strings
    (listing "") and of numbers, "other" buckets and nulls everywhere: float64 all the way, so
    the graph agrees with scikit-learn to rounding, forests included."""
    categories = {c.name: sorted_values(c.values) for c in MIXED.features if c.values}
    transformer = template_transformer_for(
        ["x", "member"], ["city", "size", "rating"], datetime=["when"], categories=categories
    )
    train = mixed_columns(400, 1)
    features = MIXED.prepare(pd.DataFrame(train))
    model = estimator.fit(transformer.fit(features).transform(features), label_of(train))
    graph = onnx.convert(transformer, model, MIXED, True)
    compiled = onnx.CompiledModel(graph, MIXED, True)
    test = mixed_columns(150, 2)
    transformed = transformer.transform(MIXED.prepare(pd.DataFrame(test)))
    problem, figures = onnx.agreement(
        (model.predict(transformed), model.predict_proba(transformed)),
        compiled.predict(test),
        CompiledConfig(),
        True,
    )
    assert problem is None and figures["max_probability_diff"] < 1e-5, figures
    # Serving loads the graph without pandas or scikit-learn.
    (tmp_path / "model.onnx").write_bytes(graph)
    script = (
        "import sys; from sail_pipelines.inference import onnx; "
        "from served import MIXED, columns; "
        "m = onnx.CompiledModel(open('model.onnx', 'rb').read(), MIXED, True); "
        "m.predict(columns); print(sorted({'pandas', 'sklearn'} & set(sys.modules)))"
    )
    (tmp_path / "served.py").write_text(
        "from sail_pipelines.contract.schema import parse_schema\n"
        f"MIXED = parse_schema({MIXED.to_dict()!r})\n"
        f"columns = {test!r}\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


CALENDAR_CASES = [
    "2024-05-01",
    "2024-02-29",
    "2024-12-31",
    "2024-05-01T13:45:00",
    "2024-05-01 13:45",
    "2024-05-01T13",
    "2024-05-01T13:45:00Z",
    "2024-05-01T13:45:00.123456789",
    "2024-05-01T13:45:00.5Z",
    "2024-05-01T13:45:00+05:30",
    "2024-05-01T13:45:00+0530",
    "2024-05-01T13:45:00-00:00",
    "2024-01-01T01:00:00+05:00",  # the day, month and year before, in UTC
    "2023-12-31T23:30:00-01:00",  # the year after, in UTC
    "20240501",
    "garbage",
    "",
    "2024-02-30",
    "2024-13-01",
    "2024-05-01T24:00:00",
    "2024-05-01T13:45:60",
    "2024-05-01T13:45:00UTC",
    None,
    float("nan"),
]


def test_calendar_features_match_pandas():
    """contract.calendar (no pandas) against what CalendarFeatures computed with pandas'
    to_datetime(utc=True, format="ISO8601"): dates, times, offsets, garbage and gaps."""
    stamps = pd.to_datetime(
        pd.Series(CALENDAR_CASES, dtype=object), errors="coerce", utc=True, format="ISO8601"
    ).dt
    expected = np.column_stack(
        [getattr(stamps, p).astype(float) for p in ("year", "month", "day_of_week", "day_of_year")]
        + [stamps.hour.astype(float)]
    )
    assert np.array_equal(calendar(CALENDAR_CASES, hour=True), expected, equal_nan=True)
    assert has_times(["2024-05-01", "2024-05-01T00:00:00Z"]) is False
    assert has_times(["2024-05-01", "2024-05-01T00:00:00+01:00"]) is True  # 23:00 in UTC


def test_calendar_features_follow_the_contract_where_pandas_does_not():
    """A date is what the schema accepts (`parse_datetime`): padded, week and lower-case forms it
    accepts have calendar features (pandas read them as missing, and years 1 and 9999 too, or not,
    depending on the column's other values); forms it refuses at validation, in batch and in the
    API (a year alone, one-digit months) give NaN (pandas read them)."""
    accepted = [" 2024-05-01 ", "2024-W18-3", "2024-05-01t00:00", "0001-01-01", "9999-12-31"]
    assert calendar(accepted, hour=False).tolist() == [[2024, 5, 2, 122]] * 3 + [
        [1, 1, 0, 1],
        [9999, 12, 4, 365],
    ]
    assert np.isnan(calendar(["2024", "2024-05", "2024-5-1"], hour=False)).all()
    parquet = [pd.Timestamp("2024-05-01 13:00", tz="Europe/Lisbon"), pd.NaT, dt.date(2024, 5, 1)]
    assert np.array_equal(
        calendar(parquet, hour=True),
        [[2024, 5, 2, 122, 12], [np.nan] * 5, [2024, 5, 2, 122, 0]],
        equal_nan=True,
    )


@pytest.mark.slow
def test_a_candidate_that_disagrees_is_scored_and_served_by_scikit_learn(project_copy, monkeypatch):
    """Tolerances of zero: every compiled candidate disagrees, so scikit-learn scores and serves,
    and the reason travels to the evaluation, the bundle, the report and /metadata."""
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["compiled"]["max_probability_diff"] = 0.0
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sail(project_copy, "evaluate"))
    evaluation = json.loads((project_copy / "reports" / "evaluation.json").read_text())
    for candidate in evaluation["candidates"].values():
        inference = candidate["inference"]
        assert inference["runtime"] == "sklearn"
        assert inference["reason"].startswith(
            "the compiled model disagrees with scikit-learn on the test split: "
            "class probabilities differ by up to"
        )
    ok(sail(project_copy, "gate"))
    accepted = project_copy / "models" / "accepted"
    assert not (accepted / "model.onnx").exists()  # what was scored is what serves
    bundle = load_bundle(accepted, signing.private_key(TEST_KEY, "test"))
    assert bundle.runtime == "sklearn"
    served = create_app(bundle).test_client().get("/metadata").get_json()["inference"]
    assert (
        served["runtime"] == "sklearn"
        and served["reason"] == bundle.metadata["inference"]["reason"]
    )
    ok(sail(project_copy, "report", GITHUB_STEP_SUMMARY=""))
    assert (
        "Served by **scikit-learn**: the compiled model disagrees"
        in (project_copy / "reports" / "report.md").read_text()
    )


@pytest.mark.slow
def test_a_disabled_compiled_path_trains_no_graph(project_copy):
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["compiled"] = {"enabled": False}
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sail(project_copy, "train", "--candidate", "random_forest"))
    bundle = project_copy / "models" / "candidates" / "random_forest"
    assert not (bundle / "model.onnx").exists()
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["inference"] == {
        "runtime": "sklearn",
        "reason": "the compiled path is off (params.yaml compiled.enabled)",
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"enabled": "yes"}, "compiled.enabled = 'yes' is not true or false; write true or false"),
        ({"max_probability_diff": 2}, "compiled.max_probability_diff = 2 is outside [0, 1]"),
        ({"tolerance": 1}, "compiled.tolerance is not a known key; use one of enabled"),
    ],
)
def test_bad_compiled_settings_are_one_line(project_copy, bad, message):
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["compiled"] = bad
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = sail(project_copy, "train")
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
