"""The standard protocols, spoken to by clients this project did not write: MLflow's own
scoring-server client for /invocations and tritonclient for the Open Inference Protocol v2.
Also: a compiled bundle serves without pandas or scikit-learn ever being imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

import try_bundle
from sail_pipelines.contract import ranges
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.inference import onnx, prediction_log, protocols
from sail_pipelines.inference.model import predict
from sail_pipelines.inference.requests import InputError
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity.bundle import (
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    dump_object,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

SECRET = "protocol-test-key"
KEY = HmacKey(SECRET.encode())
SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        Column("x1", "float"),
        Column("x2", "float"),
        Column("n", "int"),
        Column("color", "category", values=("a", "b")),
    ),
)
MODEL_NAME, VERSION = "churn", "3"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    frame = try_bundle.frame(120, 3)
    label = ((frame.x1 - frame.x2 + frame.n / 4 + (frame.color == "a")) > 0.8).astype(int)
    transformer = try_bundle.transformer(frame)
    model = LogisticRegression().fit(transformer.transform(frame), label)
    metadata = {
        "task": "classification",
        "schema": SCHEMA.to_dict(),
        "name": "logreg",
        "classes": [0, 1],
        "probabilities": True,
        "registry": {"model": MODEL_NAME, "version": VERSION},
        "inference": {"runtime": "onnx", "reason": None},
    }
    files = {
        MODEL: dump_object(model),
        TRANSFORMER: dump_object(transformer),
        ONNX_MODEL: onnx.convert(transformer, model, SCHEMA, classification=True),
    }
    dest = tmp_path_factory.mktemp("protocols") / "bundle"
    write_bundle(dest, files, metadata, KEY)
    return dest


@pytest.fixture(scope="module")
def server(bundle_dir):
    """`sail serve` (gunicorn) on a free loopback port."""
    with local_server(bundle_dir, KEY) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _columns(frame: pd.DataFrame) -> dict[str, list]:
    return {c: frame[c].tolist() for c in SCHEMA.feature_names}


def test_mlflow_scoring_client(server, bundle_dir):
    client = ScoringServerClient("127.0.0.1", _port(server))
    client.wait_server_ready(timeout=10)
    assert client.get_version()
    rows = try_bundle.frame(7, 11)
    expected = predict(load_bundle(bundle_dir, KEY), _columns(rows))[0].tolist()
    response = client.invoke(rows)  # as dataframe_split
    assert response.get_predictions(predictions_format="ndarray").tolist() == expected


def test_mlflow_formats_all_answer_alike(server):
    import requests

    rows = try_bundle.frame(4, 12)
    records = json.loads(rows.to_json(orient="records"))
    bodies = {
        "dataframe_split": json.loads(rows.to_json(orient="split", index=False)),
        "dataframe_records": records,
        "instances": records,
        "inputs": {c: rows[c].tolist() for c in rows.columns},
    }
    answers = {
        key: requests.post(f"{server}/invocations", json={key: body}, timeout=10)
        for key, body in bodies.items()
    }
    assert {key: r.status_code for key, r in answers.items()} == dict.fromkeys(bodies, 200)
    assert len({json.dumps(r.json()) for r in answers.values()}) == 1
    assert list(answers["inputs"].json()) == ["predictions"]
    bad = requests.post(
        f"{server}/invocations",
        json={"dataframe_records": [{**records[0], "x1": "high"}]},
        timeout=10,
    )
    assert (
        bad.status_code == 422
        and bad.json()["field"] == "x1"
        and bad.json()["error_code"] == "BAD_REQUEST"
    )


def _triton_inputs(frame: pd.DataFrame, float_type: str = "FP64") -> list:
    inputs = []
    for name, datatype, values in (
        ("x1", float_type, frame.x1.to_numpy(np.float64 if float_type == "FP64" else np.float32)),
        ("x2", float_type, frame.x2.to_numpy(np.float64 if float_type == "FP64" else np.float32)),
        ("n", "INT64", frame.n.to_numpy(np.int64)),
        ("color", "BYTES", frame.color.to_numpy(object)),
    ):
        tensor = triton.InferInput(name, [len(frame), 1], datatype)
        tensor.set_data_from_numpy(values.reshape(-1, 1), binary_data=False)
        inputs.append(tensor)
    return inputs


def test_open_inference_protocol_with_tritonclient(server, bundle_dir):
    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL_NAME) and client.is_model_ready(MODEL_NAME, VERSION)
        meta = client.get_model_metadata(MODEL_NAME, VERSION)
        assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == [VERSION]
        assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
            ("x1", "FP64"),
            ("x2", "FP64"),
            ("n", "INT64"),
            ("color", "BYTES"),
        ]
        rows = try_bundle.frame(9, 13)
        expected, probabilities = predict(load_bundle(bundle_dir, KEY), _columns(rows))
        outputs = [
            triton.InferRequestedOutput(n, binary_data=False) for n in ("predict", "predict_proba")
        ]
        for float_type in ("FP64", "FP32"):
            result = client.infer(
                MODEL_NAME, _triton_inputs(rows, float_type), model_version=VERSION, outputs=outputs
            )
            assert result.as_numpy("predict").tolist() == expected.tolist()
            assert result.as_numpy("predict_proba") == pytest.approx(probabilities, abs=1e-6)
        with pytest.raises(InferenceServerException, match="'n'"):
            wrong = _triton_inputs(rows)
            wrong[2] = triton.InferInput("n", [len(rows), 1], "BYTES")
            wrong[2].set_data_from_numpy(
                np.array([["1"]] * len(rows), dtype=object), binary_data=False
            )
            client.infer(MODEL_NAME, wrong)
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.get_model_metadata("someone-else")
        with pytest.raises(InferenceServerException, match="binary tensor data"):
            client.infer(MODEL_NAME, [_binary(rows[:1]), *_triton_inputs(rows[:1])[1:]])
    finally:
        client.close()


def _binary(frame: pd.DataFrame):
    tensor = triton.InferInput("x1", [len(frame), 1], "FP64")
    tensor.set_data_from_numpy(frame.x1.to_numpy(np.float64).reshape(-1, 1), binary_data=True)
    return tensor


NO_SKLEARN = """
import json, sys
from pathlib import Path
for name in ("pandas", "sklearn", "scipy", "joblib"):
    sys.modules[name] = None  # importing any of them now fails
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import load_bundle
from sail_pipelines.integrity.signing import HmacKey

bundle = load_bundle(Path(sys.argv[1]), HmacKey(sys.argv[2].encode()))
client = create_app(bundle).test_client()
row = {"x1": 0.1, "x2": -0.4, "n": 2, "color": "b"}
answers = [
    client.post("/predict", json=[row, row]),
    client.post("/invocations", json={"dataframe_records": [row]}),
    client.post("/v2/models/churn/infer", json={"inputs": [
        {"name": k, "shape": [1], "datatype": "BYTES" if k == "color" else "FP64", "data": [v]}
        for k, v in row.items()]}),
    client.get("/metadata"),
]
runtime = answers[-1].get_json()["inference"]["runtime"]
print(json.dumps([a.status_code for a in answers] + [runtime]))
"""


def test_compiled_bundle_serves_without_pandas_or_sklearn(bundle_dir):
    result = subprocess.run(
        [sys.executable, "-c", NO_SKLEARN, str(bundle_dir), SECRET],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [200, 200, 200, 200, "onnx"]


# --- every column type through v2, and the training limits of dates and categories -------------

EVERY_TYPE = Schema(
    target=Column("y", "category", values=("no", "yes")),
    features=(
        Column("when", "datetime", nullable=True),
        Column("flag", "bool"),
        Column("city", "category", values=("Faro", "Porto"), other=True),
        Column("k", "category", values=(1, 2, 3)),
        Column("size", "float"),
        Column("count", "int"),
    ),
    ignored=(Column("id", "text", role="ignore"),),
)


def _infer(**tensors) -> dict:
    """A v2 body: name -> (datatype, data)."""
    return {
        "inputs": [
            {"name": n, "datatype": t, "shape": [len(d)], "data": d}
            for n, (t, d) in tensors.items()
        ]
    }


GOOD_TENSORS = {
    "when": ("BYTES", ["2024-05-01", None]),
    "flag": ("BOOL", [True, False]),
    "city": ("BYTES", ["Faro", "Lagos"]),
    "k": ("INT64", [1, 3]),
    "size": ("FP64", [0.5, 2]),
    "count": ("INT64", [2, 3]),
}


def test_v2_metadata_names_each_type_and_infer_takes_it():
    meta = protocols.v2_metadata(EVERY_TYPE, "m", "1", "sklearn", "classification", ["no"], True)
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {
        "when": "BYTES",
        "flag": "BOOL",
        "city": "BYTES",
        "k": "INT64",
        "size": "FP64",
        "count": "INT64",
    }
    assert meta["outputs"][0]["datatype"] == "BYTES"
    expected = {name: data for name, (_, data) in GOOD_TENSORS.items()}
    columns, _ = protocols.v2_columns(EVERY_TYPE, _infer(**GOOD_TENSORS), 10)
    assert columns == expected
    # any numeric datatype for a number; the target and ignored columns come along and are dropped
    numbers = {
        **GOOD_TENSORS,
        "size": ("FP32", [0.5, 2]),
        "count": ("FP16", [2.0, 3.0]),
        "k": ("INT32", [1.0, 3]),  # JSON has numbers: 1.0 is as whole as 1
        "y": ("BYTES", ["no", "yes"]),
        "id": ("BYTES", ["c1", "c2"]),
    }
    columns, _ = protocols.v2_columns(EVERY_TYPE, _infer(**numbers), 10)
    assert columns == {**expected, "count": [2.0, 3.0], "k": [1.0, 3]}
    assert protocols.v2_label_datatype([True, False], "classification") == "BOOL"


@pytest.mark.parametrize(
    "name, tensor, status, message",
    [
        (
            "when",
            ("INT64", [20240501, 20240502]),
            422,
            "datatype INT64 does not fit the feature; send BYTES",
        ),
        ("when", ("BYTES", ["01/05/2024", None]), 422, "ISO 8601"),
        ("flag", ("INT64", [1, 0]), 422, "send BOOL"),
        ("flag", ("BOOL", [1, 0]), 422, "BOOL data must be true or false"),
        ("city", ("BYTES", [5, 6]), 422, "BYTES data must be strings"),
        ("size", ("BYTES", ["0.5", "2"]), 422, "send a numeric datatype such as FP64"),
        ("count", ("INT8", [2, 300]), 422, "integers from -128 to 127"),
        ("count", ("UINT8", [2, -1]), 422, "integers from 0 to 255"),
        ("count", ("FP32", [2.5, 3]), 422, "whole number"),
        ("count", ("INT64", [2, 2**60]), 422, "from -2^53 to 2^53"),
        ("count", (["INT64"], [2, 3]), 422, "datatype ['INT64'] is not one of"),
        ("y", ({"a": 1}, ["no", "yes"]), 422, "datatype {'a': 1} is not one of"),
        ("size", ("FP64", [0.5, True]), 422, "FP64 data must be numbers"),
        ("y", ("BYTES", [{"a": 1}, "no"]), 422, "BYTES data must be strings"),
        ("y", ("BYTES", ["no"]), 422, "different numbers of rows"),
        ("zzz", ("FP64", [1.0, 2.0]), 422, "unexpected input tensor 'zzz'"),
    ],
)
def test_v2_refuses_what_does_not_fit_naming_the_tensor(name, tensor, status, message):
    with pytest.raises(InputError) as refused:
        protocols.v2_columns(EVERY_TYPE, _infer(**{**GOOD_TENSORS, name: tensor}), 10)
    assert refused.value.status == status and message in refused.value.message
    assert refused.value.field in (name, "inputs")


def _limited(frame: pd.DataFrame, margin: float = 0.1) -> tuple[dict, ranges.Limits]:
    profile = ranges.with_limits(EVERY_TYPE, frame, {"columns": {}})
    metadata = {"training_profile": profile, "serving": {"range_margin": margin}}
    return profile["columns"], ranges.training_limits(EVERY_TYPE, metadata)


TRAINED = pd.DataFrame(
    {
        "when": ["2020-01-01T10:00:00+02:00", None, "2020-12-31T00:00:00Z", "2020-06-01T12:00"],
        "city": ["Faro", "Lagos", None, "Faro"],  # Lagos only through the `other` bucket
        "k": [1.0, 2.0, np.nan, 1.0],  # as pandas reads numbers with a gap; 3 never appears
        "size": [0.0, 1.0, 2.0, 3.0],
    }
)


def test_training_records_dates_and_categories_seen():
    columns, limits = _limited(TRAINED)
    assert [columns["when"]["min"], columns["when"]["max"]] == TRAINED.when[[0, 2]].tolist()
    assert columns["city"]["seen"] == ["Faro", "Lagos"] and columns["k"]["seen"] == [1, 2]
    assert set(limits.dates) == {"when"} and limits.seen == {
        "city": frozenset({"Faro", "Lagos"}),
        "k": frozenset({1, 2}),
    }
    assert "when" not in ranges.training_ranges(EVERY_TYPE, {"training_profile": columns})


def test_dates_and_categories_beyond_training_are_found():
    _, limits = _limited(TRAINED)  # a year and a bit, widened by 10% (~36 days) each side
    columns = {
        "when": [
            "2020-01-01T08:00:00Z",  # the first instant itself
            "2019-12-01",
            "2019-10-01",  # before the widened range
            "2021-01-20T00:00",  # no zone: UTC
            pd.Timestamp("2031-01-01"),  # a timestamp read from a Parquet file
            None,
            float("nan"),
        ],
        "city": ["Faro", "Lagos", "Porto", "Braga", None, "Faro", float("nan")],
        "k": [1, 2.0, 3, 1, 1, 1, 1],
    }
    found = [(b.record, b.field, b.value) for b in ranges.beyond(columns, limits)]
    assert found == [
        (2, "when", "2019-10-01"),
        (2, "city", "Porto"),  # listed in the schema, yet training never held it
        (2, "k", 3),
        (3, "city", "Braga"),  # accepted only through the `other` bucket
        (4, "when", "2031-01-01 00:00:00"),
    ]
    first = ranges.beyond(columns, limits)[0]
    assert first.message().startswith("'when' = 2019-10-01 is outside the training range [2019-")
    assert first.to_dict()["range"][1].startswith("2021-02-")
    unseen = ranges.beyond(columns, limits)[1]
    assert unseen.to_dict() == {"record": 2, "field": "city", "value": "Porto", "unseen": True}
    assert unseen.message() == (
        "'city' = 'Porto' was never seen in training (serving.out_of_range: refuse)"
    )


def test_dates_alone_widen_to_whole_days_and_old_bundles_judge_numbers_only():
    dates = TRAINED.assign(when=["1967-07-01", None, "2015-04-01", "1990-01-01"])
    _, limits = _limited(dates)
    low, high = (ranges.iso(s) for s in limits.dates["when"])
    assert (low, high) == ("1962-09-20", "2020-01-10")
    far = {"when": ["9999-12-31", "1600-01-01", "0001-01-01T00:00:00+01:00"]}
    assert [b.record for b in ranges.beyond(far, limits)] == [0, 1, 2]
    old = {"training_profile": {"columns": {"size": {"min": 0.0, "max": 3.0}}}}
    limits = ranges.training_limits(EVERY_TYPE, old)
    columns = {"when": ["9999-12-31"], "city": ["Braga"], "size": [4.0]}
    assert [b.field for b in ranges.beyond(columns, limits)] == ["size"]


def test_the_prediction_log_keeps_out_flagged_values_of_unlogged_columns(tmp_path):
    log = prediction_log.PredictionLog(
        prediction_log.LogSettings(str(tmp_path / "p.jsonl")), {}, "b1", ["when"]
    )
    flags = [
        ranges.Beyond(0, "when", "9999-12-31", ("a", "b")),
        ranges.Beyond(0, "city", "X", None),
    ]
    log.write("r1", "/predict", 200, 0.001, {"when": ["9999-12-31"]}, None, flags)
    line = json.loads((tmp_path / "p.jsonl").read_text())
    assert line["out_of_range"] == [
        {"record": 0, "field": "when", "value": "9999-12-31", "range": ["a", "b"]},
        {"record": 0, "field": "city", "unseen": True},
    ]
