"""Explanations on public tables that are not the shipped example (the shared `public_project`s:
penguins, a classification with categories and gaps; economics, a regression with a date):
every candidate a `sail run` trained (linear, forest, boosted trees) explains served requests
with contributions that add up to the model's own output, under the source columns' names only
(a one-hot category and a date's calendar features each come back as their column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TEST_VERIFY_KEY
from sail_pipelines.contract.data import json_records
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

pytestmark = pytest.mark.slow
VERIFY = signing.public_key(TEST_VERIFY_KEY, "test")
ROWS = 40


@pytest.mark.parametrize("table", ["penguins", "economics"])
def test_every_candidate_explains_served_requests_additively_by_source_column(
    public_project, table
):
    project = public_project(table)
    test = pd.read_csv(project / "data" / "split" / "test.csv").head(ROWS)
    for folder in sorted((project / "models" / "candidates").iterdir()):
        bundle = load_bundle(folder, VERIFY)
        schema = bundle.schema
        answer = (
            create_app(bundle)
            .test_client()
            .post(
                "/predict?explain=true", json=json_records(test.drop(columns=[schema.target.name]))
            )
        )
        body = answer.get_json()
        assert answer.status_code == 200, (folder.name, body)
        model = bundle.model
        transformed = bundle.transformer.transform(schema.prepare(test[schema.feature_names]))
        for i, item in enumerate(body["explanations"]):
            assert set(item["contributions"]) == set(schema.feature_names), folder.name
            total = item["base_value"] + sum(item["contributions"].values())
            assert total == pytest.approx(item["output"], abs=1e-6 * max(1, abs(item["output"])))
            assert item["output"] == pytest.approx(
                own_output(model, transformed, i, item), abs=1e-6
            )
            served = (
                body["probabilities"][i][str(item["class"])]
                if item["space"] == "probability"
                else body["predictions"][i]
            )
            if item["space"] != "log-odds":  # ONNX Runtime serves in float32
                assert item["output"] == pytest.approx(served, rel=1e-4, abs=1e-5), folder.name


def own_output(model, transformed: np.ndarray, row: int, item: dict) -> float:
    """What scikit-learn's own model gives in the explanation's space, for its class."""
    x = transformed[row : row + 1]
    if item["space"] == "value":
        return float(model.predict(x)[0])
    classes = [str(c) for c in model.classes_]
    if item["space"] == "probability":
        return float(model.predict_proba(x)[0][classes.index(str(item["class"]))])
    margin = np.atleast_1d(model.decision_function(x)[0])
    return float(margin[classes.index(str(item["class"]))] if len(margin) > 1 else margin[0])
