"""The compiled path on public tables, not only on the shipped example: every candidate converts
and agrees, the accepted bundle serves by ONNX Runtime, and what it serves is what `sail predict`
and scikit-learn give, within the project's `compiled:` tolerances. Dates, categories (with an
"other" bucket), missing values: each table has some. One real `sail run` per table (the shared
`public_project`), one real `sail serve` per table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from conftest import TEST_VERIFY_KEY, ok, sail
from datasets import PUBLIC
from sail_pipelines.config import CompiledConfig
from sail_pipelines.contract.data import json_records
from sail_pipelines.inference import onnx
from sail_pipelines.inference.model import predict
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

pytestmark = pytest.mark.slow
VERIFY = signing.public_key(TEST_VERIFY_KEY, "test")


@pytest.fixture(scope="module", params=list(PUBLIC))
def served(request, public_project) -> tuple[Path, str]:
    """A public table's project after `sail run`, its accepted bundle served by `sail serve`."""
    project = public_project(request.param)
    with local_server(project / "models" / "accepted", VERIFY) as url:
        yield project, url


def assert_candidates_compiled(project: Path) -> None:
    """Every candidate carries a graph, and the metric step found it agreeing with scikit-learn."""
    evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
    for name, candidate in evaluation["candidates"].items():
        assert (project / "models" / "candidates" / name / "model.onnx").is_file(), name
        inference = candidate["inference"]
        assert inference["runtime"] == "onnx" and inference["reason"] is None, (name, inference)
        assert set(inference["agreement"]) == {"test_split", "holdout"}, inference


def assert_serves_compiled(project: Path, url: str, scratch: Path) -> None:
    """/metadata says ONNX Runtime serves; /predict on the test split equals `sail predict` and
    scikit-learn (the accepted bundle's own pickles), within the project's tolerances."""
    assert requests.get(f"{url}/metadata", timeout=30).json()["inference"]["runtime"] == "onnx"
    params = yaml.safe_load((project / "params.yaml").read_text())
    config = CompiledConfig(**params.get("compiled", {}))
    classification = params["task"] == "classification"
    test_csv = project / "data" / "split" / "test.csv"
    test = pd.read_csv(test_csv)
    bundle = load_bundle(project / "models" / "accepted", VERIFY)
    sent = test.drop(columns=[bundle.schema.target.name])  # ignored columns ride along
    answer = requests.post(f"{url}/predict", json=json_records(sent), timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    classes = [str(c) for c in bundle.classes]
    probabilities = (
        np.array([[row[c] for c in classes] for row in body["probabilities"]])
        if classification
        else None
    )
    served = (np.asarray(body["predictions"], dtype=object), probabilities)
    output = scratch / f"{project.name}-batch.csv"
    ok(sail(project, "predict", "--input", str(test_csv), "--output", str(output)))
    batch = pd.read_csv(output)
    assert list(map(str, body["predictions"])) == list(map(str, batch["prediction"]))
    if classification:
        batch_probabilities = batch[[f"probability_{c}" for c in classes]].to_numpy()
        assert np.allclose(probabilities, batch_probabilities, rtol=0, atol=1e-9)
    expected = predict(bundle, bundle.schema.prepare(test), "sklearn")
    if not classification:
        served = (np.asarray(body["predictions"], dtype=float), None)
    else:
        expected = (np.asarray(expected[0], dtype=object), expected[1])
    problem, figures = onnx.agreement(expected, served, config, classification)
    assert problem is None, (problem, figures)


def test_every_candidate_has_a_graph_that_agrees(served):
    project, _ = served
    assert_candidates_compiled(project)


def test_served_compiled_and_equal_to_batch_and_scikit_learn(served, tmp_path):
    project, url = served
    assert_serves_compiled(project, url, tmp_path)
