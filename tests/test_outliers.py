"""Outlier scores (issue 26, item 3): the detector training fits on the STL's output gives the same
score from /predict, v2, both batch paths, the ONNX graph and scikit-learn; flags the training
split at about its quantile and rows unlike the joint distribution (inside every per-feature
range) nearly always; `sail monitor` holds the served share to max_outlier_share; `refuse`
answers 422; and a tampered detector file is refused like any bundle file."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import datasets as sk
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from conftest import TEST_VERIFY_KEY
from logged import accept_classifier, post_logged
from sail_pipelines.config import MonitoringConfig
from sail_pipelines.contract.schema import Column, Schema, parse_schema
from sail_pipelines.errors import SailError
from sail_pipelines.inference import batch_io, onnx, onnx_forest, outliers, predict
from sail_pipelines.inference.onnx import CompiledModel
from sail_pipelines.inference.prediction_log import LogSettings
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import (
    METADATA,
    ONNX_MODEL,
    OUTLIERS,
    TRANSFORMER,
    BundleRejected,
    LoadedBundle,
    load_bundle,
    read_verified,
    write_bundle,
)
from sail_pipelines.monitoring import logs, monitor, render
from sail_pipelines.training import outliers as fitting

VERIFY = signing.public_key(TEST_VERIFY_KEY, "test")
SIGNER = signing.generate()
TOLERANCE = 1e-5


def accepted(project: Path) -> LoadedBundle:
    return load_bundle(project / "models" / "accepted", VERIFY)


def test_every_path_gives_the_same_score(pipeline_project, tmp_path):
    """/predict and v2 (ONNX Runtime), both batch paths, the joblib fallback and scikit-learn's
    own `-score_samples` on the STL output agree; /invocations stays MLflow's answer."""
    bundle = accepted(pipeline_project)
    assert bundle.runtime == "onnx" and {OUTLIERS, ONNX_MODEL} <= set(bundle.files)
    test = pd.read_csv(pipeline_project / "data" / "split" / "test.csv")
    features = test[bundle.schema.feature_names]
    records = json.loads(features.to_json(orient="records"))
    client = create_app(bundle).test_client()
    body = client.post("/predict", json=records).get_json()
    served = np.array(body["outlier_score"])
    assert body["outlier"] == (served > bundle.metadata["outliers"]["threshold"]).tolist()

    inputs = [
        {"name": c, "datatype": "FP64", "shape": [len(test)], "data": features[c].tolist()}
        for c in bundle.schema.feature_names
    ]
    v2 = client.post(f"/v2/models/{body_model(client)}/infer", json={"inputs": inputs}).get_json()
    by_name = {o["name"]: o for o in v2["outputs"]}
    assert by_name["outlier"]["datatype"] == "BOOL"
    assert by_name["outlier"]["data"] == body["outlier"]
    invocations = client.post("/invocations", json={"dataframe_records": records[:2]}).get_json()
    assert set(invocations) == {"predictions"}

    source = tmp_path / "in.csv"
    test.to_csv(source, index=False)
    predict.run(pipeline_project / "models" / "accepted", VERIFY, source, tmp_path / "a.csv")
    batch_io.run(pipeline_project / "models" / "accepted", VERIFY, source, tmp_path / "b.csv")
    with_pandas, without = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert with_pandas["outlier"].tolist() == without["outlier"].tolist() == body["outlier"]

    sklearn_served = LoadedBundle(
        bundle.path,
        bundle.bundle_id,
        {**bundle.metadata, "inference": {"runtime": "sklearn"}},
        bundle.files,
    )
    fallback = outliers.predict(sklearn_served, features)[1].scores
    detector = joblib.load(io.BytesIO(bundle.files[OUTLIERS]))
    reference = fitting.scores(detector, bundle.transformer.transform(features))
    v2_scores = by_name["outlier_score"]["data"]
    for scores in (v2_scores, with_pandas.outlier_score, without.outlier_score):
        np.testing.assert_allclose(scores, served, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(fallback, served, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(reference, served, rtol=0, atol=TOLERANCE)


def body_model(client) -> str:
    described = client.get("/metadata").get_json()
    return described["registered_model"] or described["name"]


def test_training_rows_are_flagged_at_about_the_quantile(pipeline_project):
    bundle = accepted(pipeline_project)
    train = pd.read_csv(pipeline_project / "data" / "split" / "train.csv")
    flagged = int(predict.predict_frame(bundle, train)["outlier"].sum())
    n, share = len(train), 1 - bundle.metadata["outliers"]["quantile"]
    assert abs(flagged - n * share) <= 4 * math.sqrt(n * share * (1 - share)) + 1, flagged
    assert bundle.metadata["outliers"]["training_outliers"] == flagged


def test_metadata_and_openapi_describe_the_detector(pipeline_project):
    client = create_app(accepted(pipeline_project)).test_client()
    described = client.get("/metadata").get_json()["outliers"]
    assert described["action"] == "flag" and described["quantile"] == 0.99
    assert 0 < described["threshold"] < 1 and "IsolationForest" in described["detector"]
    document = client.get("/openapi.json").get_json()
    fields = document["components"]["schemas"]["Prediction"]["properties"]
    assert fields["outlier"]["items"]["type"] == "boolean"
    assert "threshold" in fields["outlier_score"]["description"]


@pytest.mark.parametrize("name", [OUTLIERS, ONNX_MODEL])  # the compiled path's is in the graph
def test_a_tampered_detector_file_is_refused(pipeline_project, tmp_path, name):
    bundle = tmp_path / "accepted"
    shutil.copytree(pipeline_project / "models" / "accepted", bundle)
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleRejected, match=f"{name} does not match its signed hash"):
        load_bundle(bundle, VERIFY)


def anti_corners(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """Rows inside every feature's [min, max] but far from the joint distribution: each near a
    corner of the box where features that move together (neighbours along the first principal
    axis) sit at opposite ends."""
    rng = np.random.default_rng(seed)
    low, high = frame.min().to_numpy(), frame.max().to_numpy()
    standard = (frame - frame.mean()) / frame.std()
    order = np.argsort(np.linalg.eigh(np.cov(standard.T))[1][:, -1])
    inward = rng.uniform(0, 0.05, size=(rows, frame.shape[1])) * (high - low)
    at_top = np.zeros((rows, frame.shape[1]), dtype=bool)
    for r, shift in enumerate(rng.integers(0, 2, size=rows)):
        at_top[r, order] = (np.arange(frame.shape[1]) + shift) % 2 == 0
    return pd.DataFrame(np.where(at_top, high - inward, low + inward), columns=frame.columns)


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_rows_unlike_the_joint_distribution_are_flagged(name):
    """On tables other than the shipped example, through the STL as training fits it; the
    forest's ONNX graph, attached to a model's, scores every row as scikit-learn does."""
    frame = getattr(sk, f"load_{name}")(as_frame=True).data
    stl = ColumnTransformer([("n", StandardScaler(), list(frame.columns))]).fit(frame)
    detector, _, described = fitting.fitted(stl.transform(frame), 0.99, 0)
    odd = anti_corners(frame, 200, seed=1)
    assert ((odd >= frame.min()) & (odd <= frame.max())).all().all()
    scores = fitting.scores(detector, stl.transform(odd))
    assert np.mean(scores > described["threshold"]) >= 0.9

    schema = parse_schema(
        {
            "columns": [{"name": c, "type": "float", "role": "feature"} for c in frame.columns]
            + [{"name": "y", "type": "float", "role": "target"}]
        }
    )
    target = frame.iloc[:, 0] > frame.iloc[:, 0].median()
    model = LogisticRegression().fit(stl.transform(frame), target)
    graphs = {ONNX_MODEL: onnx.convert(stl, model, schema, classification=True)}
    trained = fitting.Trained({}, described, onnx_forest.convert(stl, detector, schema), None)
    assert trained.attach(graphs) is None
    graph = CompiledModel(graphs[ONNX_MODEL], schema, True)
    both = pd.concat([frame, odd], ignore_index=True)
    (labels, _), compiled = graph.run({c: both[c].tolist() for c in frame.columns})
    assert (labels == model.predict(stl.transform(both))).all()
    reference = fitting.scores(detector, stl.transform(both))
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=TOLERANCE)


SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        Column("x1", "float"),
        Column("income", "float"),
        Column("color", "category", values=("a", "b")),
    ),
)


def draw(n: int, seed: int, odd: float = 0.0) -> pd.DataFrame:
    """x1 and income move together; a share `odd` of rows has them at opposite ends, each value
    inside its training range."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, size=n)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "income": 3000 + 800 * x1 + rng.normal(0, 80, size=n),
            "color": rng.choice(["a", "b"], size=n),
        }
    )
    flip = rng.random(n) < odd
    frame.loc[flip, "x1"] = rng.uniform(1.5, 2.0, size=flip.sum())
    frame.loc[flip, "income"] = rng.uniform(1500, 1900, size=flip.sum())
    frame["label"] = (frame.x1 > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A small classifier signed in place (tests/logged.py) with a detector fitted as training
    fits one; returns its project folder and training split."""
    train = draw(2000, 1)
    project = accept_classifier(tmp_path_factory.mktemp("outliers"), train, SCHEMA, [0, 1], SIGNER)
    with_detector(project, train, "flag")
    return project, train


def with_detector(project: Path, train: pd.DataFrame, action: str) -> None:
    bundle = project / "models" / "accepted"
    files, _ = read_verified(bundle, SIGNER.verify_key)
    metadata = json.loads(files.pop(METADATA))
    transformer = joblib.load(io.BytesIO(files[TRANSFORMER]))
    detector, detector_files, described = fitting.fitted(
        transformer.transform(train[SCHEMA.feature_names]), 0.99, 0
    )
    metadata.update(outliers=described, serving={"outliers": action})
    write_bundle(bundle, {**files, **detector_files}, metadata, SIGNER)


def monitored(project: Path, train: pd.DataFrame, log: Path, served: pd.DataFrame) -> dict:
    records = served[SCHEMA.feature_names].to_dict("records")
    post_logged(project, SIGNER.verify_key, log, records, 50)
    bundle = load_bundle(project / "models" / "accepted", SIGNER.verify_key)
    traffic = logs.read(str(log))
    return monitor.compare(SCHEMA, bundle.metadata, train, traffic, MonitoringConfig())


def test_monitor_holds_the_outlier_share_to_its_limit(small, tmp_path):
    project, train = small
    clean = monitored(project, train, tmp_path / "clean.jsonl", draw(1000, 2))
    assert clean["outliers"]["share"] < 0.03
    assert not [b for b in clean["breaches"] if b.startswith("outliers:")]
    odd = monitored(project, train, tmp_path / "odd.jsonl", draw(1000, 3, odd=0.2))
    assert odd["outliers"]["share"] > 0.15
    assert [b for b in odd["breaches"] if "monitoring.max_outlier_share" in b]
    assert "served records flagged by the detector" in render.markdown(odd, [])
    # every logged line carries the fields
    line = json.loads((tmp_path / "odd.jsonl").read_text().splitlines()[0])
    assert len(line["outputs"]["outlier"]) == len(line["outputs"]["outlier_score"]) == 50


def test_metrics_count_outliers(small):
    project, _ = small
    client = create_app(load_bundle(project / "models" / "accepted", SIGNER.verify_key))
    odd = draw(200, 4, odd=0.5)
    body = client.test_client().post("/predict", json=odd[SCHEMA.feature_names].to_dict("records"))
    flagged = sum(body.get_json()["outlier"])
    exposed = client.test_client().get("/metrics").get_data(as_text=True)
    assert flagged > 50 and f"sail_outliers_total {float(flagged)}" in exposed


def test_refuse_answers_422_naming_the_score_and_threshold(small, tmp_path):
    project, train = small
    refusing = tmp_path / "refusing"
    shutil.copytree(project, refusing)
    with_detector(refusing, train, "refuse")
    bundle = load_bundle(refusing / "models" / "accepted", SIGNER.verify_key)
    client = create_app(bundle, log_settings=LogSettings(str(tmp_path / "p.jsonl"))).test_client()
    odd = {"x1": 1.9, "income": 1600.0, "color": "a"}
    normal = {"x1": 0.1, "income": 3080.0, "color": "b"}
    answer = client.post("/predict", json=[normal, odd])
    assert answer.status_code == 422, answer.get_json()
    error = answer.get_json()
    assert error["record"] == 1 and "record 1 is an outlier" in error["error"]
    assert f"{bundle.metadata['outliers']['threshold']:.4f}" in error["error"]
    assert client.post("/predict", json=normal).status_code == 200
    frame = pd.DataFrame([normal, odd])
    with pytest.raises(SailError, match="is an outlier"):
        predict.predict_frame(bundle, frame)
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(SailError, match="^line 3: the record is an outlier"):
        batch_io.run(bundle.path, SIGNER.verify_key, tmp_path / "in.csv", tmp_path / "out.csv")
