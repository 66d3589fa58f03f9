"""The prediction log and /metrics, in process: what each served request and scored batch leaves
behind, that personal data never reaches the log, and the Prometheus counters of one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.errors import SailError
from sail_pipelines.inference import predict
from sail_pipelines.inference.prediction_log import LogSettings, settings_from
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import (
    MODEL,
    TRANSFORMER,
    dump_object,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

KEY = HmacKey(b"test-key")
SECRET = 4242.4242  # a value of the `log: false` column: it must never be found in a log
SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        Column("x1", "float"),
        Column("income", "float", log=False),
        Column("color", "category", values=("a", "b")),
    ),
)
GOOD = {"x1": 0.5, "income": SECRET, "color": "a"}


def write_test_bundle(dest: Path, key) -> Path:
    """A small classifier on SCHEMA, signed with `key` (the metrics test serves it too)."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=60),
            "income": rng.normal(3000, 2000, size=60),
            "color": rng.choice(["a", "b"], size=60),
        }
    )
    frame["label"] = (frame.x1 > 0).astype(int)
    features = frame[SCHEMA.feature_names]
    transformer = ColumnTransformer(
        [
            ("n", StandardScaler(), ["x1", "income"]),
            ("c", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    ).fit(features)
    model = LogisticRegression().fit(transformer.transform(features), frame["label"])
    metadata = {
        "task": "classification",
        "schema": SCHEMA.to_dict(),
        "name": "logreg",
        "classes": [0, 1],
        "registry": {"model": "m", "version": "3"},
        "probabilities": True,
        "training_profile": {
            "columns": {"x1": {"min": -3.0, "max": 3.0}, "income": {"min": -5e4, "max": 5e4}}
        },
        "inference": {"runtime": "sklearn", "reason": "test"},
    }
    write_bundle(
        dest, {MODEL: dump_object(model), TRANSFORMER: dump_object(transformer)}, metadata, key
    )
    return dest


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return write_test_bundle(tmp_path_factory.mktemp("plog") / "bundle", KEY)


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir, KEY)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_protocol_and_refusal_writes_one_line_without_personal_data(bundle, tmp_path):
    log = tmp_path / "predictions.jsonl"
    client = create_app(bundle, log_settings=LogSettings(str(log))).test_client()
    predicted = client.post("/predict", json=[GOOD, {**GOOD, "x1": -1.0}])
    assert predicted.status_code == 200
    assert client.post("/invocations", json={"dataframe_records": [GOOD]}).status_code == 200
    v2 = {
        "inputs": [
            {
                "name": n,
                "shape": [1],
                "datatype": "FP64" if n != "color" else "BYTES",
                "data": [GOOD[n]],
            }
            for n in SCHEMA.feature_names
        ]
    }
    assert client.post("/v2/models/m/infer", json=v2).status_code == 200
    assert client.post("/predict", json={**GOOD, "x1": "oops"}).status_code == 422
    assert client.get("/metadata").status_code == 200  # not a prediction: not logged
    # The router's request id (the same for the live container and its shadow) is logged as
    # given; one that is not a plain token is replaced by a new one.
    routed = client.post("/predict", json=[GOOD], headers={"X-Request-ID": "abc-123.x"})
    odd = client.post("/predict", json=[GOOD], headers={"X-Request-ID": 'a b"c'})
    assert routed.headers["X-Request-ID"] == routed.get_json()["request_id"] == "abc-123.x"
    assert len(odd.headers["X-Request-ID"]) == 32 and " " not in odd.headers["X-Request-ID"]
    assert [line["request_id"] for line in _lines(log)[-2:]] == [
        "abc-123.x",
        odd.headers["X-Request-ID"],
    ]

    assert str(SECRET) not in log.read_text()  # the `log: false` column, by value and by name:
    assert all("income" not in line["inputs"] for line in _lines(log) if line["inputs"])
    first, mlflow, oip, refused = _lines(log)[:4]
    assert first["request_id"] == predicted.headers["X-Request-ID"]
    assert (first["model"], first["version"], first["bundle_id"]) == ("m", "3", bundle.bundle_id)
    assert first["route"] == "/predict" and first["status"] == 200 and first["latency_ms"] > 0
    assert first["inputs"] == {"x1": [0.5, -1.0], "color": ["a", "a"]}
    body = predicted.get_json()
    assert first["outputs"]["prediction"] == body["predictions"]
    assert first["outputs"]["probabilities"]["1"] == [p["1"] for p in body["probabilities"]]
    assert mlflow["route"] == "/invocations" and mlflow["inputs"] == {"x1": [0.5], "color": ["a"]}
    assert oip["route"] == "/v2/models/m/infer" and len(oip["outputs"]["prediction"]) == 1
    assert refused["status"] == 422 and refused["inputs"] is None and refused["outputs"] is None


def test_a_directory_gets_one_file_per_process_and_sampling_thins_it(bundle, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    client = create_app(bundle, log_settings=LogSettings(str(folder))).test_client()
    for _ in range(3):
        client.post("/predict", json=GOOD)
    (written,) = folder.iterdir()
    assert written.name.startswith("predictions-") and len(_lines(written)) == 3

    silent = tmp_path / "silent.jsonl"
    client = create_app(bundle, log_settings=LogSettings(str(silent), sample=0.0)).test_client()
    client.post("/predict", json=GOOD)
    assert not silent.exists() or silent.read_text() == ""


def test_stdout_and_settings(bundle, capsys, tmp_path):
    client = create_app(bundle, log_settings=settings_from("-")).test_client()
    client.post("/predict", json=GOOD)
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["status"] == 200
    assert settings_from(
        None, None, {"SAIL_PREDICTION_LOG": "/x", "SAIL_PREDICTION_LOG_SAMPLE": "0.25"}
    ) == LogSettings("/x", 0.25)
    assert settings_from(None, None, {}) == LogSettings(None, 1.0)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(
        SailError, match="cannot write the prediction log to .*a-file is not a writable folder"
    ):
        settings_from(str(tmp_path / "a-file" / "sub" / "p.jsonl"), None, {})
    assert settings_from(
        str(tmp_path / "new" / "p.jsonl"), None, {}
    ).destination  # folders get made
    for bad in ("2", "often", "-0.1"):
        with pytest.raises(SailError, match="sampling rate must be a number from 0 to 1"):
            settings_from("-", bad, {})


def test_a_batch_writes_one_line_per_chunk(bundle_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame([GOOD] * 5).to_csv(source, index=False)
    log = tmp_path / "batch.jsonl"
    predict.run(
        bundle_dir,
        KEY,
        source,
        tmp_path / "out.csv",
        chunk_rows=2,
        log_settings=LogSettings(str(log)),
    )
    lines = _lines(log)
    assert [len(line["outputs"]["prediction"]) for line in lines] == [2, 2, 1]
    assert all(
        line["route"] == "batch" and set(line["inputs"]) == {"x1", "color"} for line in lines
    )
    assert str(SECRET) not in log.read_text()  # (a request id may hold "4242")


def _samples(text: str, name: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name)
    }


def test_metrics_count_requests_refusals_classes_and_strays(bundle):
    client = create_app(bundle).test_client()
    client.post("/predict", json=[GOOD, {**GOOD, "x1": -1.0}])
    client.post("/predict", json={**GOOD, "x1": 99.0})  # beyond the training range: flagged
    client.post("/predict", json={**GOOD, "color": "z"})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    requests = _samples(text, "sail_requests_total")
    assert requests['sail_requests_total{route="/predict",status="200"}'] == 2
    assert requests['sail_requests_total{route="/predict",status="422"}'] == 1
    assert _samples(text, "sail_refused_inputs_total") == {
        'sail_refused_inputs_total{field="color"}': 1
    }
    assert _samples(text, "sail_out_of_range_values_total") == {
        'sail_out_of_range_values_total{feature="x1"}': 1
    }
    classes = _samples(text, "sail_predictions_total")
    assert sum(classes.values()) == 3 and set(classes) == {
        'sail_predictions_total{cls="1"}',
        'sail_predictions_total{cls="0"}',
    }
    assert (
        _samples(text, "sail_request_seconds_count")['sail_request_seconds_count{route="/predict"}']
        == 3
    )
    (info,) = _samples(text, "sail_model_info").items()
    assert (
        f'bundle_id="{bundle.bundle_id}"' in info[0] and 'version="3"' in info[0] and info[1] == 1
    )


def test_regression_values_go_to_a_histogram_over_the_training_range():
    from sail_pipelines.inference.metrics import Metrics

    stats = Metrics(
        {"task": "regression", "training_profile": {"columns": {"y": {"min": 0, "max": 10}}}},
        "b",
        "onnx",
        "y",
    )
    stats.scored([1.0, 2.0, 11.0], [])
    text = stats.exposition()[0].decode()
    buckets = _samples(text, "sail_prediction_value_bucket")
    assert (
        buckets['sail_prediction_value_bucket{le="2.0"}'] == 2
        and buckets['sail_prediction_value_bucket{le="10.0"}'] == 2
    )
    assert (
        buckets['sail_prediction_value_bucket{le="+Inf"}'] == 3
        and "sail_predictions_total{" not in text
    )


WRITERS = """
import os, sys
from sail_pipelines.inference.prediction_log import LogSettings, PredictionLog
pids = []
for n in range(4):  # as gunicorn's workers: siblings writing to the stdout they share
    pid = os.fork()
    if pid == 0:
        log = PredictionLog(LogSettings("-"), {"name": "m"}, "b", ["x"])
        for i in range(100):
            log.write(f"w{n}-{i}", "/predict", 200, 0.001, {"x": ["v" * 20_000]}, None)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
"""


def test_workers_sharing_stdout_never_cut_each_others_lines():
    """A line longer than a pipe's atomic write (4 kB) is written under a lock the workers share."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", WRITERS], capture_output=True, check=True, timeout=60
    ).stdout
    ids = [json.loads(line)["request_id"] for line in out.splitlines()]
    assert sorted(ids) == sorted(f"w{n}-{i}" for n in range(4) for i in range(100))
