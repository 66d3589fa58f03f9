"""The prediction API: endpoints, strict input checks, a real gunicorn run, and refusing bad
bundles."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.errors import SailError
from sail_pipelines.inference import onnx, serve
from sail_pipelines.inference.model import predict
from sail_pipelines.inference.serve import create_app, run_server, worker_count
from sail_pipelines.inference.server_logs import ACCESS
from sail_pipelines.integrity.bundle import (
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    BundleRejected,
    dump_object,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

KEY = HmacKey(b"test-key")
SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        Column("x1", "float"),
        Column("x2", "float"),
        Column("x3", "float"),
        Column("color", "category", values=("a", "b")),
    ),
)
GOOD = {"x1": 0.5, "x2": -1.0, "x3": 2, "color": "a"}
MAX_RECORDS = 5
MAX_BODY = 200_000  # room for the 100 000-deep nesting cases


def _training_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["x1", "x2", "x3"])
    frame["color"] = rng.choice(["a", "b"], size=80)
    frame["label"] = ((frame.x1 + frame.x2 - frame.x3 + (frame.color == "a")) > 0.5).astype(int)
    return frame


@pytest.fixture(scope="module", params=["onnx", "sklearn"])
def bundle_dir(request, tmp_path_factory) -> Path:
    """The same model served by each runtime: compiled (ONNX Runtime) and scikit-learn."""
    frame = _training_frame()
    features = frame[SCHEMA.feature_names]
    transformer = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["x1", "x2", "x3"]),
            ("category", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    ).fit(features)
    model = LogisticRegression().fit(transformer.transform(features), frame["label"])
    metadata = {
        "task": "classification",
        "schema": SCHEMA.to_dict(),
        "name": "logreg",
        "data_hash": "d4t4h45h",
        "git_commit": "c0ffee",
        "created_at": "2024-01-01T00:00:00+00:00",
        "registry": {"model": "m", "version": "1"},
        "evaluation": {"metrics": {"roc_auc": 0.93, "f1": 0.81}},
        "classes": [0, 1],
        "probabilities": True,
        "inference": {
            "runtime": request.param,
            "reason": None if request.param == "onnx" else "test: sklearn serves",
        },
    }
    files = {MODEL: dump_object(model), TRANSFORMER: dump_object(transformer)}
    if request.param == "onnx":
        files[ONNX_MODEL] = onnx.convert(transformer, model, SCHEMA, classification=True)
    dest = tmp_path_factory.mktemp("serve") / "bundle"
    write_bundle(dest, files, metadata, KEY)
    return dest


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir, KEY)


@pytest.fixture
def client(bundle):
    return create_app(bundle, max_records=MAX_RECORDS, max_body_bytes=MAX_BODY).test_client()


def _post(client, payload):
    return client.post("/predict", data=json.dumps(payload), content_type="application/json")


def _expected(bundle, records):
    """What the serving runtime predicts, after checking it against scikit-learn's pipeline."""
    columns = {name: [r[name] for r in records] for name in SCHEMA.feature_names}
    served = predict(bundle, columns)
    reference = predict(bundle, columns, "sklearn")
    assert served[0].tolist() == reference[0].tolist()
    assert served[1] == pytest.approx(reference[1], abs=1e-5)
    return served


# --- endpoints ---------------------------------------------------------------------------------


def test_health(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_ready_after_warm_up(client, bundle):
    resp = client.get("/ready")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "bundle_id": bundle.bundle_id}


def test_metadata_travels_with_the_model(client, bundle):
    body = client.get("/metadata").get_json()
    assert body["model_version"] == "1"
    assert body["registered_model"] == "m"
    assert body["bundle_id"] == bundle.bundle_id
    assert body["name"] == "logreg"
    assert body["task"] == "classification"
    assert body["metrics"] == {"roc_auc": 0.93, "f1": 0.81}
    assert body["data_hash"] == "d4t4h45h"
    assert body["git_commit"] == "c0ffee"
    assert body["created_at"] == "2024-01-01T00:00:00+00:00"
    assert body["schema"] == SCHEMA.to_dict()
    assert body["inference"]["runtime"] == bundle.runtime
    if bundle.runtime == "sklearn":  # never a silent switch: the reason is in /metadata
        assert body["inference"]["reason"] == "test: sklearn serves"
    else:
        assert body["inference"]["reason"] is None


def test_metadata_of_an_ungated_candidate_has_nulls(bundle):
    metadata = {k: v for k, v in bundle.metadata.items() if k not in ("registry", "evaluation")}
    client = create_app(dataclasses.replace(bundle, metadata=metadata)).test_client()
    body = client.get("/metadata").get_json()
    assert body["model_version"] is None and body["metrics"] is None
    assert _post(client, GOOD).get_json()["model_version"] is None


def test_predict_one_record(client, bundle):
    resp = _post(client, GOOD)
    assert resp.status_code == 200
    body = resp.get_json()
    predictions, probabilities = _expected(bundle, [GOOD])
    assert body["predictions"] == predictions.tolist()
    assert body["model_version"] == "1"
    assert body["bundle_id"] == bundle.bundle_id
    assert len(body["request_id"]) == 32
    assert resp.headers["X-Request-ID"] == body["request_id"]
    assert set(body["probabilities"][0]) == {"0", "1"}
    assert body["probabilities"][0]["1"] == pytest.approx(probabilities[0][1])


def test_predict_many_records(client, bundle):
    rows = _training_frame()[SCHEMA.feature_names].head(MAX_RECORDS).to_dict("records")
    resp = _post(client, rows)
    assert resp.status_code == 200
    body = resp.get_json()
    predictions, probabilities = _expected(bundle, rows)
    assert body["predictions"] == predictions.tolist()
    assert len(body["probabilities"]) == len(rows)
    for got, want in zip(body["probabilities"], probabilities, strict=True):
        assert sum(got.values()) == pytest.approx(1.0)
        assert [got["0"], got["1"]] == pytest.approx(want.tolist())


def test_integer_and_float_spellings_predict_the_same(client):
    as_int = _post(client, {**GOOD, "x1": 1}).get_json()
    as_float = _post(client, {**GOOD, "x1": 1.0}).get_json()
    assert as_int["probabilities"] == as_float["probabilities"]


def test_each_request_gets_its_own_id_and_one_access_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        first = _post(client, [GOOD, GOOD]).get_json()["request_id"]
        second = _post(client, {**GOOD, "x1": "oops"}).get_json()["request_id"]
    assert first != second
    lines = [
        (r.request_id, r.getMessage(), r.records, r.status)
        for r in caplog.records
        if r.name == ACCESS
    ]
    assert lines == [(first, "POST /predict 200", 2, 200), (second, "POST /predict 422", 0, 422)]


# --- bad input ---------------------------------------------------------------------------------


def _record(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def _raw(value: str) -> bytes:
    """A record with x1 spelled as raw JSON text, for literals json.dumps would not write."""
    return b'{"x1": ' + value.encode() + b', "x2": -1.0, "x3": 2, "color": "a"}'


WITHOUT_X2 = json.dumps({k: v for k, v in GOOD.items() if k != "x2"}).encode()
JSON = "application/json"

BAD_INPUTS = [
    pytest.param("POST", "/predict", b"", JSON, 400, None, id="empty-body"),
    pytest.param("POST", "/predict", b'{"x1": 0.5,', JSON, 400, None, id="malformed-json"),
    pytest.param("POST", "/predict", b'{"x1": "\xff\xfe"}', JSON, 400, None, id="invalid-utf8"),
    pytest.param("POST", "/predict", _record(), "text/plain", 415, None, id="wrong-content-type"),
    pytest.param("POST", "/predict", _record(), None, 415, None, id="no-content-type"),
    pytest.param("POST", "/predict", b'"hello"', JSON, 422, None, id="top-level-string"),
    pytest.param("POST", "/predict", b"42", JSON, 422, None, id="top-level-number"),
    pytest.param("POST", "/predict", b"null", JSON, 422, None, id="top-level-null"),
    pytest.param("POST", "/predict", b"true", JSON, 422, None, id="top-level-true"),
    pytest.param("POST", "/predict", b"[]", JSON, 422, None, id="empty-array"),
    pytest.param(
        "POST", "/predict", b"[" + _record() + b", 5]", JSON, 422, None, id="array-with-non-object"
    ),
    pytest.param("POST", "/predict", WITHOUT_X2, JSON, 422, "x2", id="missing-field"),
    pytest.param(
        "POST",
        "/predict",
        b"[" + _record() + b"," + WITHOUT_X2 + b"]",
        JSON,
        422,
        "x2",
        id="missing-field-in-second-record",
    ),
    pytest.param("POST", "/predict", _record(zzz=1), JSON, 422, "zzz", id="extra-field"),
    pytest.param(
        "POST", "/predict", _record(label={"a": 1}), JSON, 422, "label", id="target-not-one-value"
    ),
    pytest.param("POST", "/predict", _record(x1="abc"), JSON, 422, "x1", id="string-for-number"),
    pytest.param("POST", "/predict", _record(x1="1.5"), JSON, 422, "x1", id="numeric-string"),
    pytest.param("POST", "/predict", _record(x1=True), JSON, 422, "x1", id="boolean"),
    pytest.param("POST", "/predict", _record(x1=None), JSON, 422, "x1", id="null"),
    pytest.param("POST", "/predict", _raw("NaN"), JSON, 400, "x1", id="nan"),
    pytest.param("POST", "/predict", _raw("Infinity"), JSON, 400, "x1", id="infinity"),
    pytest.param("POST", "/predict", _raw("-Infinity"), JSON, 400, "x1", id="minus-infinity"),
    pytest.param("POST", "/predict", b"[NaN]", JSON, 422, None, id="bare-nan-in-array"),
    pytest.param("POST", "/predict", _raw("1e999"), JSON, 422, "x1", id="float-overflow-1e999"),
    pytest.param(
        "POST", "/predict", _raw("1" + "0" * 400), JSON, 422, "x1", id="integer-beyond-float-range"
    ),
    pytest.param(
        "POST", "/predict", _raw("1" * 5000), JSON, 400, None, id="integer-too-many-digits"
    ),
    pytest.param(
        "POST", "/predict", _record(x1={"a": 1}), JSON, 422, "x1", id="nested-object-value"
    ),
    pytest.param("POST", "/predict", _record(x1=[1]), JSON, 422, "x1", id="list-value"),
    pytest.param("POST", "/predict", _record(color="c"), JSON, 422, "color", id="unknown-category"),
    pytest.param(
        "POST", "/predict", _record(color=True), JSON, 422, "color", id="boolean-category"
    ),
    pytest.param(
        "POST",
        "/predict",
        b'{"x1": 1, "x1": 2, "x2": 0, "x3": 0, "color": "a"}',
        JSON,
        400,
        "x1",
        id="duplicate-key",
    ),
    pytest.param("POST", "/predict", b"[" * 100_000, JSON, 400, None, id="deeply-nested"),
    pytest.param(
        "POST", "/predict", b'{"a":' * 20_000, JSON, 400, None, id="deeply-nested-objects"
    ),
    pytest.param(
        "POST", "/predict", b" " * MAX_BODY + _record(), JSON, 413, None, id="body-too-large"
    ),
    pytest.param(
        "POST",
        "/predict",
        json.dumps([GOOD] * (MAX_RECORDS + 1)).encode(),
        JSON,
        413,
        None,
        id="too-many-records",
    ),
    pytest.param("GET", "/predict", None, None, 405, None, id="get-predict"),
    pytest.param("POST", "/health", b"{}", JSON, 405, None, id="post-health"),
    pytest.param("GET", "/nope", None, None, 404, None, id="unknown-route"),
]


def _mlflow(**body) -> bytes:
    return json.dumps(body).encode()


def _tensor(name, value, datatype=None, shape=None):
    datatype = datatype or ("BYTES" if name == "color" else "FP64")
    data = value if isinstance(value, list) else [value]
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


def _v2(*changed, drop=(), **body) -> bytes:
    """An infer request of GOOD with some tensors replaced (by name) or dropped."""
    tensors = {
        t["name"]: t for t in (_tensor(k, v) for k, v in GOOD.items()) if t["name"] not in drop
    }
    tensors.update({t["name"]: t for t in changed})
    return json.dumps({"inputs": list(tensors.values()), **body}).encode()


INFER = "/v2/models/m/infer"
SPLIT_COLUMNS = list(GOOD)
BAD_PROTOCOL_INPUTS = [
    pytest.param("POST", "/invocations", b"", JSON, 400, None, id="mlflow-empty-body"),
    pytest.param("POST", "/invocations", b'{"inputs": [', JSON, 400, None, id="mlflow-malformed"),
    pytest.param(
        "POST", "/invocations", _mlflow(inputs=[GOOD]), "text/csv", 415, None, id="mlflow-csv"
    ),
    pytest.param("POST", "/invocations", b"[]", JSON, 422, None, id="mlflow-not-an-object"),
    pytest.param("POST", "/invocations", _mlflow(), JSON, 422, None, id="mlflow-no-format"),
    pytest.param(
        "POST", "/invocations", _mlflow(rows=[GOOD]), JSON, 422, "rows", id="mlflow-unknown-key"
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(instances=[GOOD], inputs=[GOOD]),
        JSON,
        422,
        "inputs",
        id="mlflow-two-formats",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(inputs=[GOOD], params={"k": 1}),
        JSON,
        422,
        "params",
        id="mlflow-params",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_split=[GOOD]),
        JSON,
        422,
        "dataframe_split",
        id="split-not-an-object",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_split={"columns": SPLIT_COLUMNS, "data": [[1, 2]]}),
        JSON,
        422,
        "dataframe_split.data",
        id="split-short-row",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_split={"columns": [1, 2], "data": []}),
        JSON,
        422,
        "dataframe_split.columns",
        id="split-numeric-columns",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_split={"columns": SPLIT_COLUMNS, "data": [[1, 2, 3, "z"]]}),
        JSON,
        422,
        "color",
        id="split-unknown-category",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_records={"x1": 1}),
        JSON,
        422,
        "dataframe_records",
        id="records-not-an-array",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_records=[{**GOOD, "x1": "a"}]),
        JSON,
        422,
        "x1",
        id="records-string-for-number",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(dataframe_records=[]),
        JSON,
        422,
        "dataframe_records",
        id="records-empty",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(instances=[GOOD] * (MAX_RECORDS + 1)),
        JSON,
        413,
        None,
        id="instances-too-many",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(inputs={"x1": [1], "x2": [1, 2]}),
        JSON,
        422,
        "inputs",
        id="inputs-ragged-columns",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(inputs={"x1": 1}),
        JSON,
        422,
        "x1",
        id="inputs-scalar-column",
    ),
    pytest.param(
        "POST",
        "/invocations",
        _mlflow(inputs={k: [v] for k, v in GOOD.items() if k != "x3"}),
        JSON,
        422,
        "x3",
        id="inputs-missing-column",
    ),
    pytest.param("GET", "/invocations", None, None, 405, None, id="get-invocations"),
    pytest.param("POST", INFER, b"", JSON, 400, None, id="v2-empty-body"),
    pytest.param(
        "POST",
        INFER,
        _v2(_tensor("x1", 0.0)).replace(b"[0.0]", b"[NaN]"),
        JSON,
        400,
        "x1",
        id="v2-nan",
    ),
    pytest.param(
        "POST",
        "/invocations",
        b'{"dataframe_split": {"columns": ["x1"], "data": [[Infinity]]}}',
        JSON,
        400,
        "x1",
        id="split-infinity",
    ),
    pytest.param("POST", INFER, _mlflow(), JSON, 422, "inputs", id="v2-no-inputs"),
    pytest.param(
        "POST", INFER, _mlflow(inputs=[5]), JSON, 422, "inputs[0]", id="v2-tensor-not-an-object"
    ),
    pytest.param("POST", INFER, _v2(drop=("color",)), JSON, 422, "color", id="v2-missing-tensor"),
    pytest.param("POST", INFER, _v2(_tensor("zzz", 1.0)), JSON, 422, "zzz", id="v2-unknown-tensor"),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", "1.5", "BYTES")), JSON, 422, "x1", id="v2-bytes-for-number"
    ),
    pytest.param(
        "POST",
        INFER,
        _v2(_tensor("color", 1, "INT64")),
        JSON,
        422,
        "color",
        id="v2-number-for-category",
    ),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", 1.0, "FLOAT")), JSON, 422, "x1", id="v2-unknown-datatype"
    ),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", 1.5, "INT64")), JSON, 422, "x1", id="v2-fraction-in-int64"
    ),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", 1.0, shape=[2])), JSON, 422, "x1", id="v2-shape-too-big"
    ),
    pytest.param(
        "POST",
        INFER,
        _v2(_tensor("x1", [1.0, 2.0], shape=[1, 2])),
        JSON,
        422,
        "x1",
        id="v2-wide-shape",
    ),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", 1.0, shape=[-1])), JSON, 422, "x1", id="v2-negative-shape"
    ),
    pytest.param(
        "POST", INFER, _v2(_tensor("x1", [1.0, 2.0])), JSON, 422, "inputs", id="v2-ragged-rows"
    ),
    pytest.param("POST", INFER, _v2(_tensor("x1", [None])), JSON, 422, "x1", id="v2-null-value"),
    pytest.param(
        "POST", INFER, _v2(_tensor("color", "c")), JSON, 422, "color", id="v2-unknown-category"
    ),
    pytest.param(
        "POST",
        INFER,
        _v2(outputs=[{"name": "logits"}]),
        JSON,
        422,
        "outputs[0].name",
        id="v2-unknown-output",
    ),
    pytest.param("POST", INFER, _v2(), "text/plain", 415, None, id="v2-text-plain"),
    pytest.param(
        "POST", "/v2/models/nope/infer", _v2(), JSON, 404, "model_name", id="v2-unknown-model"
    ),
    pytest.param(
        "POST",
        "/v2/models/m/versions/9/infer",
        _v2(),
        JSON,
        404,
        "model_version",
        id="v2-unknown-version",
    ),
    pytest.param(
        "GET", "/v2/models/nope", None, None, 404, "model_name", id="v2-metadata-unknown-model"
    ),
    pytest.param("GET", INFER, None, None, 405, None, id="v2-get-infer"),
]


@pytest.mark.parametrize(
    "method, path, body, content_type, status, field", BAD_INPUTS + BAD_PROTOCOL_INPUTS
)
def test_bad_input_gets_a_json_4xx_and_serving_goes_on(
    client, method, path, body, content_type, status, field
):
    resp = client.open(path, method=method, data=body, content_type=content_type)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json
    payload = resp.get_json()
    assert payload["error"]
    assert payload["field"] == field
    assert payload["request_id"] == resp.headers["X-Request-ID"]
    assert "Traceback" not in resp.get_data(as_text=True)
    assert _post(client, GOOD).status_code == 200


def test_binary_tensor_data_is_refused(client):
    resp = client.post(
        INFER, data=_v2(), content_type=JSON, headers={"Inference-Header-Content-Length": "10"}
    )
    assert resp.status_code == 415 and "binary" in resp.get_json()["error"]


def test_protocols_answer_like_predict(client, bundle):
    rows = [GOOD, {**GOOD, "x1": -2.5, "color": "b"}]
    predictions, probabilities = _expected(bundle, rows)
    split = {"columns": SPLIT_COLUMNS, "data": [[r[c] for c in SPLIT_COLUMNS] for r in rows]}
    for body in (
        {"dataframe_split": split},
        {"dataframe_records": rows},
        {"instances": rows},
        {"inputs": {c: [r[c] for r in rows] for c in SPLIT_COLUMNS}},
    ):
        resp = client.post("/invocations", json=body)
        assert resp.status_code == 200 and resp.get_json() == {"predictions": predictions.tolist()}
    infer = client.post(
        INFER,
        data=_v2(
            _tensor("x1", [0.5, -2.5]),
            _tensor("x2", [-1.0, -1.0]),
            _tensor("x3", [2, 2], "INT64"),
            _tensor("color", ["a", "b"]),
            _tensor("label", [1, 0], "INT64"),  # the target: accepted and dropped
            id="req-1",
        ),
        content_type=JSON,
    ).get_json()
    assert infer["id"] == "req-1" and infer["model_name"] == "m" and infer["model_version"] == "1"
    assert infer["outputs"][0] == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [2],
        "data": predictions.tolist(),
    }
    assert infer["outputs"][1]["shape"] == [2, 2]
    assert infer["outputs"][1]["data"] == pytest.approx(probabilities.ravel().tolist())
    assert client.get("/ping").status_code == 200 and client.get("/v2/health/ready").get_json() == {
        "ready": True
    }
    meta = client.get("/v2/models/m/versions/1").get_json()
    assert meta["platform"] == {"onnx": "onnxruntime_onnx", "sklearn": "sklearn"}[bundle.runtime]


def test_bad_record_in_a_batch_is_pointed_at(client):
    payload = _post(client, [GOOD, GOOD, {**GOOD, "x3": "x"}]).get_json()
    assert payload["record"] == 2
    assert payload["field"] == "x3"
    assert payload["error"].startswith("record 2:")


def test_unexpected_fault_is_a_json_500_without_traceback(bundle, monkeypatch, caplog):
    client = create_app(bundle).test_client()

    def explode(*args):
        raise RuntimeError("secret internals")

    # what every route predicts through (the model and its outlier scores)
    monkeypatch.setattr("sail_pipelines.inference.outliers.predict", explode)
    resp = _post(client, GOOD)
    assert resp.status_code == 500
    assert resp.get_json()["error"] == "internal server error"
    assert "secret internals" not in resp.get_data(as_text=True)
    assert client.get("/health").status_code == 200


def test_failed_warm_up_means_not_ready(bundle, monkeypatch):
    def cannot_predict(*args):
        raise ValueError("cannot predict")

    monkeypatch.setattr("sail_pipelines.inference.outliers.predict", cannot_predict)
    client = create_app(bundle).test_client()
    assert client.get("/health").status_code == 200
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert "warm-up" in resp.get_json()["error"]
    assert _post(client, GOOD).status_code == 503


def test_bundle_without_schema_is_refused(bundle):
    metadata = {k: v for k, v in bundle.metadata.items() if k != "schema"}
    with pytest.raises(SailError, match="schema: expected a 'columns' list"):
        create_app(dataclasses.replace(bundle, metadata=metadata))


def test_worker_count_is_the_usable_cpus(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert worker_count(tmp_path / "no-cgroup") == max(1, cpus)
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert worker_count(cpu_max) == cpus
    cpu_max.write_text("50000 100000\n")  # docker run --cpus=0.5
    assert worker_count(cpu_max) == 1
    cpu_max.write_text("150000 100000\n")  # --cpus=1.5 rounds up, never above the affinity
    assert worker_count(cpu_max) == min(cpus, 2)
    cpu_max.write_text("garbage")
    assert worker_count(cpu_max) == cpus


# --- a real gunicorn ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def live_server(bundle_dir, tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    code = (
        "import sys; from pathlib import Path; from sail_pipelines.inference.serve import "
        "run_server; from sail_pipelines.integrity.signing import HmacKey; "
        "run_server(Path(sys.argv[1]), HmacKey(b'test-key'), host='127.0.0.1', "
        "port=int(sys.argv[2]), workers=2)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(bundle_dir), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own group: we can find the workers
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, (
                "server not ready in 30 s:\n" + (tmp_path / "server.log").read_text()
            )
            try:  # workers load after the master binds: a request may wait for one
                if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftover = _group_alive(proc.pid)
        if leftover:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        assert not leftover, "gunicorn workers outlived the arbiter"


def test_real_gunicorn_survives_bad_input(live_server, bundle):
    base, proc = live_server
    headers = {"Content-Type": "application/json"}
    bad = [
        (b"{" + b" " * 1_100_000 + b"}", 413),  # over the default 1 MB limit
        (_raw("NaN"), 400),
        (b'{"x1": 0.5,', 400),
        (b'{"x1": "\xff"}', 400),
        (b"[" * 100_000, 400),
        (_record(x1="1.5"), 422),
    ]
    for body, status in bad:
        resp = requests.post(f"{base}/predict", data=body, headers=headers, timeout=10)
        assert resp.status_code == status, resp.text
        assert resp.json()["error"]
        good = requests.post(f"{base}/predict", json=[GOOD, GOOD], timeout=10)
        assert good.status_code == 200
        assert good.json()["bundle_id"] == bundle.bundle_id
        assert good.json()["predictions"] == _expected(bundle, [GOOD, GOOD])[0].tolist()
    assert requests.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{base}/metadata", timeout=5).json()["model_version"] == "1"
    not_allowed = requests.get(f"{base}/predict", timeout=5)
    assert not_allowed.status_code == 405 and "POST" in not_allowed.headers["Allow"]
    # chunked uploads carry no Content-Length, so the size limit must hold while reading
    chunked = requests.post(f"{base}/predict", data=iter([_record()]), headers=headers, timeout=10)
    assert chunked.status_code == 200
    too_big = requests.post(
        f"{base}/predict", data=iter([b" " * 600_000] * 2), headers=headers, timeout=10
    )
    assert too_big.status_code == 413
    assert proc.poll() is None


# --- bundles that must never be served ---------------------------------------------------------


@pytest.fixture
def no_gunicorn(monkeypatch):
    """Fail instead of serving, so a missing check cannot hang the test in a running server."""
    monkeypatch.setattr(
        serve._Gunicorn, "run", lambda self: pytest.fail("server started on a rejected bundle")
    )


def test_tampered_bundle_is_refused_before_serving(bundle_dir, tmp_path, no_gunicorn):
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    data = bytearray((tampered / MODEL).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / MODEL).write_bytes(bytes(data))
    with pytest.raises(BundleRejected, match="model.joblib does not match"):
        load_bundle(tampered, KEY)
    with pytest.raises(BundleRejected, match="model.joblib does not match"):
        run_server(tampered, KEY, port=_free_port())


def test_bundle_signed_with_another_key_is_refused(bundle_dir, no_gunicorn):
    other = HmacKey(b"another-key")
    with pytest.raises(BundleRejected, match="signature does not match"):
        load_bundle(bundle_dir, other)
    with pytest.raises(BundleRejected, match="signature does not match"):
        run_server(bundle_dir, other, port=_free_port())


INT_SCHEMA = Schema(
    target=SCHEMA.target,
    features=(
        Column("n", "int"),
        Column("x", "float", nullable=True),
        Column("k", "category", values=(1, 2)),
    ),
)


@pytest.mark.parametrize(
    "rows",
    [
        [{"n": 1, "x": 0.5, "k": 1}, {"n": 2.0, "x": None, "k": 2}],
        # not a float: check_value refuses it in an int column
        [{"n": 2**60 + 1, "x": 0.5, "k": 1}],
        [{"n": 2**60, "x": 0.5, "k": 1}],  # a float, but beyond 2^53: refused as the document says
        [{"n": -(2**53), "x": 0.5, "k": 1}],  # the last one taken
        [{"n": 1.5, "x": 0.5, "k": 1}],
        [{"n": True, "x": 0.5, "k": 1}],
        [{"n": 1, "x": 0.5, "k": True}],  # True == 1, yet not a category value
        [{"n": 1, "x": 0.5, "k": 1.0}],
        [{"n": 1, "x": 0.5, "k": [1]}],
        [{"n": 1, "x": 0.5, "k": 3}],
        [{"n": 1, "x": 0.5}],
        [{"n": 1, "x": 0.5, "k": 1, "extra": 0}],
        [{"n": 1, "x": 0.5, "k": 1, "label": 1}, {"n": 2, "x": 0.5, "k": 2}],  # a whole row
        [{"n": 1, "x": 0.5, "k": 1, "label": [1]}],
        [{"n": 1, "x": float("inf"), "k": 1}],
    ],
)
def test_the_fast_column_check_agrees_with_the_record_check(rows):
    """checked_columns takes a shortcut for plainly valid batches; it must never accept what
    the per-record check refuses, nor refuse differently."""
    from sail_pipelines.inference.requests import (
        InputError,
        check_records,
        checked_columns,
        records_to_columns,
    )

    def outcome(check):
        try:
            return check()
        except InputError as exc:
            return (exc.status, exc.message, exc.field, exc.record)

    fast = outcome(lambda: checked_columns(INT_SCHEMA, rows, 10))
    slow = outcome(lambda: records_to_columns(INT_SCHEMA, check_records(INT_SCHEMA, rows, 10)))
    assert fast == slow
