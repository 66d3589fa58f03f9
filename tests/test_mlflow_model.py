"""The registered model is a real MLflow model: MLflow's own loader, server and Spark UDF use it,
and its loader refuses a tampered bundle before deserializing anything."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from conftest import TEST_KEY, TEST_VERIFY_KEY
from sail_pipelines.errors import SailError
from sail_pipelines.inference import pyfunc
from sail_pipelines.inference.smoke import free_port, local_server
from sail_pipelines.integrity import signing

MODEL = "sail_model"


@pytest.fixture
def tracking(pipeline_project, monkeypatch):
    """MLflow pointed at the project's store, and the signing key the model's loader needs."""
    uri = f"sqlite:///{pipeline_project / '.mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SAIL_SIGNING_KEY", TEST_KEY)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _test_rows(project) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "split" / "test.csv").drop(columns=["target"])


def _holdout(project) -> dict:
    return json.loads((project / "models" / "accepted" / "holdout.json").read_text())


def test_the_registered_version_is_an_mlflow_model(pipeline_project, tracking):
    local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}@candidate")
    mlmodel = yaml.safe_load(open(os.path.join(local, "MLmodel")))
    assert (
        mlmodel["flavors"]["python_function"]["loader_module"] == "sail_pipelines.inference.pyfunc"
    )
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in inputs] == list(_test_rows(pipeline_project).columns)
    assert {c["type"] for c in inputs} == {"double"}
    assert json.loads(mlmodel["signature"]["outputs"]) == [{"type": "long", "required": True}]
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe"
    requirements = open(os.path.join(local, "requirements.txt")).read()
    assert "onnxruntime==" in requirements and "sail-pipelines==" in requirements


def test_load_model_by_champion_alias(pipeline_project, tracking):
    version = tracking.get_model_version_by_alias(MODEL, "candidate").version
    tracking.set_registered_model_alias(MODEL, "champion", version)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        holdout = _holdout(pipeline_project)
        assert model.predict(pd.DataFrame(holdout["records"])).tolist() == holdout["predictions"]
    finally:
        tracking.delete_registered_model_alias(MODEL, "champion")


class Bomb:
    """Unpickling this would run code: the loader must refuse the bundle before it gets there."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/sail-deserialized-an-unverified-model",))


@pytest.mark.parametrize("tamper", ["flipped-onnx-byte", "malicious-pickle", "edited-metadata"])
def test_a_tampered_model_raises_before_loading(pipeline_project, tracking, tmp_path, tamper):
    model_dir = tmp_path / "model"
    shutil.copytree(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@candidate"), model_dir)
    bundle = model_dir / "data" / "accepted"
    if tamper == "flipped-onnx-byte":
        data = bytearray((bundle / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        (bundle / "model.onnx").write_bytes(bytes(data))
    elif tamper == "malicious-pickle":
        (bundle / "transformer.joblib").write_bytes(pickle.dumps(Bomb()))
    else:
        metadata = json.loads((bundle / "metadata.json").read_text())
        metadata["inference"]["runtime"] = "sklearn"
        (bundle / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(SailError, match="does not match its signed hash"):
        mlflow.pyfunc.load_model(str(model_dir))
    assert not os.path.exists("/tmp/sail-deserialized-an-unverified-model")


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_sail_serve(pipeline_project, tracking):
    """`mlflow models serve` on the registered model and `sail serve` on the accepted bundle give
    MLflow's scoring client the same answer, byte for byte."""
    port = free_port()
    server = subprocess.Popen(
        pyfunc.serve_command(f"models:/{MODEL}@candidate", port, workers=1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    body = {
        "dataframe_split": json.loads(
            _test_rows(pipeline_project).head(25).to_json(orient="split", index=False)
        )
    }
    try:
        client = ScoringServerClient("127.0.0.1", port)
        client.wait_server_ready(timeout=120, scoring_server_proc=server)
        theirs = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
        assert theirs.status_code == 200, theirs.text
        with local_server(
            pipeline_project / "models" / "accepted", signing.public_key(TEST_VERIFY_KEY, "test")
        ) as url:
            ours = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert ours.status_code == 200
        assert ours.json() == theirs.json()
        assert client.invoke(_test_rows(pipeline_project).head(3)).get_predictions().shape[0] == 3
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.slow
def test_spark_udf_scores_in_local_spark(pipeline_project, tracking):
    pyspark = pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import struct

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("sail-udf")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        holdout = _holdout(pipeline_project)
        frame = spark.createDataFrame(pd.DataFrame(holdout["records"]))
        udf = mlflow.pyfunc.spark_udf(
            spark, f"models:/{MODEL}@candidate", env_manager="local", result_type="long"
        )
        scored = frame.withColumn("prediction", udf(struct(*frame.columns))).toPandas()
        assert scored["prediction"].tolist() == holdout["predictions"]
    finally:
        spark.stop()
    assert pyspark.__version__


def test_evaluation_runs_record_their_datasets(pipeline_project, tracking):
    evaluation = json.loads((pipeline_project / "reports" / "evaluation.json").read_text())
    for candidate in evaluation["candidates"].values():
        inputs = tracking.get_run(candidate["mlflow_run_id"]).inputs.dataset_inputs
        contexts = {
            i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in inputs
        }
        assert contexts == {"train": "training", "test": "evaluation"}
        train = next(i.dataset for i in inputs if i.dataset.name == "train")
        metadata = json.loads(
            (pipeline_project / candidate["bundle"] / "metadata.json").read_text()
        )
        assert train.digest == metadata["train_hash"]
