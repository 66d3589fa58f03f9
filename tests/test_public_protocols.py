"""The protocols on the public tables (tests/datasets.py), spoken by clients this project did not
write: dates, categories and string labels through the Open Inference Protocol v2 (tritonclient)
answered as /predict answers; dates outside the training range and categories training never saw
flagged (API, `sail predict`, prediction log, /metrics) or, with serving.out_of_range: refuse,
refused with a 422 naming the field; whole rows (the target, an ignored column) accepted and
dropped by the API and `sail predict` alike. One `sail serve` per bundle for the module."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from conftest import TEST_KEY, TEST_VERIFY_KEY, ok, sail
from sail_pipelines.contract.ranges import beyond, training_limits
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import (
    METADATA,
    LoadedBundle,
    load_bundle,
    read_verified,
    write_bundle,
)

# Each public table is trained and served first: `make test` runs these, not `make test-fast`.
pytestmark = pytest.mark.slow

VERIFY = signing.public_key(TEST_VERIFY_KEY, "test")
DATATYPES = {"float": "FP64", "int": "INT64", "bool": "BOOL", "datetime": "BYTES"}
FAR_DATES = ("9999-12-31", "1600-01-01")
UNSEEN_PRECIP = "9.99"  # weather's precip keeps 5 values and an `other` bucket; this one is new
STATION = "station"  # the ignored column the whole-row bundle's schema adds


@dataclass
class Served:
    project: Path
    bundle: LoadedBundle
    url: str
    log: Path

    @property
    def model(self) -> str:
        return (self.bundle.metadata.get("registry") or {}).get("model") or "model"

    def rows(self, n: int) -> list[dict[str, Any]]:
        """Holdout rows as a client sends them, without missing values (a v2 tensor has no null)
        and within the training limits (nothing flagged)."""
        records = json.loads((self.bundle.path / "holdout.json").read_text())["records"]
        limits = training_limits(self.bundle.schema, self.bundle.metadata)
        plain = [
            r
            for r in records
            if None not in r.values() and not beyond({k: [v] for k, v in r.items()}, limits)
        ]
        assert len(plain) >= n
        return plain[:n]

    def predict(self, rows: Any, path: str = "/predict") -> requests.Response:
        return requests.post(f"{self.url}{path}", json=rows, timeout=30)

    def logged(self, request_id: str) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return next(line for line in lines if line["request_id"] == request_id)

    def strays(self) -> dict[str, float]:
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return {
            sample.labels["feature"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "sail_out_of_range_values"
            for sample in family.samples
            if sample.name.endswith("_total")
        }


def _whole_row_bundle(project: Path, dest: Path) -> Path:
    """The weather bundle as it would be trained with serving.out_of_range: refuse and a station
    id column `sail adopt` set to ignore: the same model and STL, re-signed with the test key."""
    files, _ = read_verified(project / "models" / "accepted", VERIFY)
    metadata = json.loads(files[METADATA])
    metadata["serving"]["out_of_range"] = "refuse"
    metadata["schema"]["columns"].append({"name": STATION, "type": "text", "role": "ignore"})
    write_bundle(dest, files, metadata, signing.private_key(TEST_KEY, "test"))
    return dest


@pytest.fixture(scope="module")
def served(public_project, tmp_path_factory):
    """name -> Served: weather, economics, penguins as `sail run` left them, and
    "weather-refuse" (see _whole_row_bundle); each started once, with a prediction log."""
    running: dict[str, Served] = {}
    with contextlib.ExitStack() as stack:

        def get(name: str) -> Served:
            if name not in running:
                project = public_project(name.split("-")[0])
                folder = tmp_path_factory.mktemp(name)
                bundle_dir = project / "models" / "accepted"
                if name == "weather-refuse":
                    bundle_dir = _whole_row_bundle(project, folder / "bundle")
                log = folder / "predictions.jsonl"
                patch = stack.enter_context(pytest.MonkeyPatch.context())
                patch.setenv("SAIL_PREDICTION_LOG", str(log))
                url = stack.enter_context(local_server(bundle_dir, VERIFY))
                running[name] = Served(project, load_bundle(bundle_dir, VERIFY), url, log)
            return running[name]

        yield get


@pytest.fixture
def triton_client():
    clients = []

    def connect(server: Served) -> triton.InferenceServerClient:
        clients.append(triton.InferenceServerClient(url=server.url.removeprefix("http://")))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


def _tensors(rows: list[dict], meta: dict, numbers: dict[str, str] | None = None) -> list:
    """One tritonclient tensor per input the metadata names, by the datatype it names (or, for
    numbers, the one `numbers` maps it to)."""
    tensors = []
    for spec in meta["inputs"]:
        datatype = (numbers or {}).get(spec["datatype"], spec["datatype"])
        values = [r[spec["name"]] for r in rows]
        dtype = object if datatype == "BYTES" else triton.triton_to_np_dtype(datatype)
        tensor = triton.InferInput(spec["name"], [len(rows), 1], datatype)
        tensor.set_data_from_numpy(np.array(values, dtype=dtype).reshape(-1, 1), binary_data=False)
        tensors.append(tensor)
    return tensors


def _labels(array: np.ndarray) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


def _narrowed(rows: list[dict], schema: Any) -> list[dict]:
    """The rows as FP32 and INT32 tensors carry them: floats rounded to float32."""
    floats = set(schema.names("float"))
    return [{k: float(np.float32(v)) if k in floats else v for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("name", ["weather", "economics", "penguins"])
def test_v2_metadata_names_each_column_by_its_type(served, triton_client, name):
    server = served(name)
    meta = triton_client(server).get_model_metadata(server.model)
    schema = server.bundle.schema
    expected = {c.name: DATATYPES.get(c.type, "BYTES") for c in schema.features}  # categories
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == expected
    assert any(c.type in ("datetime", "category") for c in schema.features)
    classification = server.bundle.metadata["task"] == "classification"
    outputs = {t["name"]: t["datatype"] for t in meta["outputs"]}
    assert outputs["predict"] == ("BYTES" if classification else "FP64")  # string labels
    assert ("predict_proba" in outputs) == classification


@pytest.mark.parametrize("name", ["weather", "economics", "penguins"])
def test_tritonclient_with_dates_and_categories_answers_as_predict(served, triton_client, name):
    server = served(name)
    client = triton_client(server)
    meta = client.get_model_metadata(server.model)
    rows = server.rows(8)
    classes = [str(c) for c in server.bundle.classes]
    wanted = [triton.InferRequestedOutput(t["name"], binary_data=False) for t in meta["outputs"]]
    for numbers in (None, {"FP64": "FP32", "INT64": "INT32"}):  # any numeric datatype will do
        sent = _narrowed(rows, server.bundle.schema) if numbers else rows
        answer = server.predict(sent).json()
        result = client.infer(server.model, _tensors(rows, meta, numbers), outputs=wanted)
        assert _labels(result.as_numpy("predict")) == answer["predictions"]
        if classes:
            expected = [[p[c] for c in classes] for p in answer["probabilities"]]
            assert result.as_numpy("predict_proba").tolist() == expected


def _holdout_pairs(server: Served) -> tuple[list[dict], list]:
    """The signed holdout's rows a v2 tensor can carry (no missing value, nothing flagged), and
    what the metric step predicted for each: a reference computed away from the server."""
    holdout = json.loads((server.bundle.path / "holdout.json").read_text())
    limits = training_limits(server.bundle.schema, server.bundle.metadata)
    pairs = [
        (record, predicted)
        for record, predicted in zip(holdout["records"], holdout["predictions"], strict=True)
        if None not in record.values() and not beyond({k: [v] for k, v in record.items()}, limits)
    ]
    assert len(pairs) >= 5
    return [r for r, _ in pairs], [p for _, p in pairs]


def _swapped_numbers(rows: list[dict], schema: Any) -> list[dict]:
    """A client that mixes up two number columns: tensors of the right name, shape and type."""
    first, second = schema.names("float")[:2]
    return [{**r, first: r[second], second: r[first]} for r in rows]


@pytest.mark.parametrize(
    "name, mix_up",
    [("penguins", False), ("economics", False), ("penguins", True), ("economics", True)],
    ids=["labels", "regression", "labels-mixed-up-client", "regression-mixed-up-client"],
)
def test_v2_answers_the_values_the_metric_step_predicted(served, triton_client, name, mix_up):
    """String labels as BYTES and regression values as FP64, equal to the holdout predictions the
    gate signed; a client that mixes up two columns (kept as a case) conforms to the schema all
    the same, and only the values show it."""
    server = served(name)
    client = triton_client(server)
    meta = client.get_model_metadata(server.model)
    rows, expected = _holdout_pairs(server)
    sent = _swapped_numbers(rows, server.bundle.schema) if mix_up else rows
    wanted = [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(server.model, _tensors(sent, meta), outputs=wanted)
    output = next(o for o in result.get_response()["outputs"] if o["name"] == "predict")
    answered = _labels(result.as_numpy("predict"))
    if server.bundle.metadata["task"] == "classification":
        classes = [str(c) for c in server.bundle.classes]
        assert output["datatype"] == "BYTES" and set(answered) <= set(classes)
        assert all(isinstance(label, str) for label in expected)
    else:
        assert output["datatype"] == "FP64"
    assert output["shape"][0] == len(rows)
    if server.bundle.metadata["task"] == "classification":
        same = answered == expected  # labels: equal strings
    else:
        same = answered == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert same is not mix_up, (answered, expected)


def test_v2_refuses_a_datatype_that_does_not_fit_naming_the_tensor(served, triton_client):
    server = served("weather")
    client = triton_client(server)
    meta = client.get_model_metadata(server.model)
    rows = server.rows(2)
    tensors = _tensors(rows, meta)
    dates = next(i for i, t in enumerate(meta["inputs"]) if t["name"] == "date")
    tensors[dates] = triton.InferInput("date", [2, 1], "INT64")
    tensors[dates].set_data_from_numpy(np.array([[20160101], [20160102]]), binary_data=False)
    with pytest.raises(InferenceServerException, match="'date'.*send BYTES"):
        client.infer(server.model, tensors)


def _far_rows(server: Served) -> list[dict]:
    """Two far-out dates and (weather) a precipitation training never saw, then a plain row."""
    rows = server.rows(4)
    seen = server.bundle.metadata["training_profile"]["columns"].get("precip", {}).get("seen")
    out = [{**rows[0], "date": FAR_DATES[0]}, {**rows[1], "date": FAR_DATES[1]}]
    if seen is not None:
        assert UNSEEN_PRECIP not in seen and rows[2]["precip"] in seen
        out.append({**rows[2], "precip": UNSEEN_PRECIP})
    return [*out, rows[3]]


@pytest.mark.parametrize("name", ["weather", "economics"])
def test_far_dates_and_unseen_categories_are_flagged(served, triton_client, name):
    server = served(name)
    rows = _far_rows(server)
    before = server.strays()
    answer = server.predict(rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    flagged = [(s["record"], s["field"], s["value"]) for s in body["out_of_range"]]
    expected = [(0, "date", FAR_DATES[0]), (1, "date", FAR_DATES[1])]
    if name == "weather":
        expected.append((2, "precip", UNSEEN_PRECIP))
    assert flagged == expected
    assert all(len(s["range"]) == 2 for s in body["out_of_range"] if s["field"] == "date")
    assert all(s.get("unseen") for s in body["out_of_range"] if s["field"] == "precip")
    assert len(body["predictions"]) == len(rows)
    # the prediction log and /metrics say the same; a v2 request of the same rows as well
    assert server.logged(body["request_id"])["out_of_range"] == body["out_of_range"]
    client = triton_client(server)
    result = client.infer(server.model, _tensors(rows, client.get_model_metadata(server.model)))
    assert _labels(result.as_numpy("predict")) == body["predictions"]
    fields = [f for _, f, _ in expected]
    after = server.strays()
    moved = {f: after[f] - before.get(f, 0) for f in after if after[f] != before.get(f, 0)}
    assert moved == {f: 2 * fields.count(f) for f in fields}  # /predict and v2


def test_batch_flags_and_passes_the_target_through_as_the_api(served, tmp_path):
    server = served("weather")
    rows = _far_rows(server)
    target = server.bundle.schema.target.name
    frame = pd.DataFrame(rows).assign(**{target: "Rain"})
    frame.loc[len(frame)] = {**server.rows(5)[4], target: "Fog", "precip": "T"}  # precip as text
    frame.to_csv(tmp_path / "rows.csv", index=False)
    log = tmp_path / "batch.jsonl"
    ok(
        sail(
            server.project,
            "predict",
            "--input",
            str(tmp_path / "rows.csv"),
            "--output",
            str(tmp_path / "out.csv"),
            "--prediction-log",
            str(log),
        )
    )
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["out_of_range"].tolist() == ["date", "date", "precip", "", ""]
    assert out[target].tolist() == ["Rain"] * 4 + ["Fog"]  # passed through, not a feature
    api = server.predict(frame.drop(columns=[target]).to_dict(orient="records")).json()
    assert out["prediction"].tolist() == api["predictions"]
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["out_of_range"] == api["out_of_range"]


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"date": FAR_DATES[0]}, "date", "outside the training range"),
        ({"date": FAR_DATES[1]}, "date", "outside the training range"),
        ({"precip": UNSEEN_PRECIP}, "precip", "never seen in training"),
    ],
)
def test_refuse_names_the_field_on_every_protocol(served, triton_client, change, field, message):
    server = served("weather-refuse")
    row = {**server.rows(1)[0], **change}
    client = triton_client(server)
    meta = client.get_model_metadata(server.model)
    for path, body in (
        ("/predict", row),
        ("/invocations", {"dataframe_records": [row]}),
    ):
        answer = server.predict(body, path)
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
        assert message in answer.json()["error"] and "serving.out_of_range: refuse" in answer.text
    logged = server.logged(answer.json()["request_id"])
    assert logged["status"] == 422 and logged["out_of_range"][0]["field"] == field
    with pytest.raises(InferenceServerException, match=f"'{field}'.*{message}"):
        client.infer(server.model, _tensors([row], meta))


def test_batch_refuses_naming_the_line_and_field(served, tmp_path):
    server = served("weather-refuse")
    plain, *far = _far_rows(server)[::-1]
    pd.DataFrame([{**plain, "precip": "T"}, *far]).to_csv(tmp_path / "rows.csv", index=False)
    result = sail(
        server.project,
        "predict",
        "--bundle",
        str(server.bundle.path),
        "--input",
        str(tmp_path / "rows.csv"),
        "--output",
        str(tmp_path / "out.csv"),
    )
    assert result.returncode != 0 and not (tmp_path / "out.csv").exists()
    assert "line 3: 'precip' = '9.99' was never seen in training" in result.stderr


def test_whole_rows_are_accepted_and_dropped_by_every_protocol(served, triton_client):
    server = served("weather-refuse")
    schema = server.bundle.schema
    target = schema.target.name
    rows = server.rows(3)
    whole = [{**r, target: "Rain", STATION: f"USW000{i}"} for i, r in enumerate(rows)]
    expected = server.predict(rows).json()["predictions"]
    columns = list(whole[0])
    for path, body in (
        ("/predict", whole),
        ("/invocations", {"dataframe_records": whole}),
        (
            "/invocations",
            {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in whole]}},
        ),
        ("/invocations", {"inputs": {c: [r[c] for r in whole] for c in columns}}),
    ):
        answer = server.predict(body, path)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
    client = triton_client(server)
    meta = client.get_model_metadata(server.model)
    extra = {"inputs": [{"name": n, "datatype": "BYTES"} for n in (target, STATION)]}
    result = client.infer(
        server.model, _tensors(whole, {"inputs": meta["inputs"] + extra["inputs"]})
    )
    assert _labels(result.as_numpy("predict")) == expected
    refused = server.predict({**whole[0], target: {"label": "Rain"}})
    assert refused.status_code == 422 and refused.json()["field"] == target
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    properties = document["components"]["schemas"]["Record"]["properties"]
    assert "accepted and dropped" in properties[target]["description"]
    assert "accepted and dropped" in properties[STATION]["description"]
