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
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.inference import onnx
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
    expected = load_bundle(bundle_dir, KEY).predict(_columns(rows))[0].tolist()
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
        expected, probabilities = load_bundle(bundle_dir, KEY).predict(_columns(rows))
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
