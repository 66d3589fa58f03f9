"""Per-request explanations (`POST /predict?explain=true`, `sail predict --explain`) on signed
bundles trained in-process on a synthetic table whose target depends on `x` only
(tests/explained.py): the contributions add up to the model's output, `x` carries them, a
category's one-hot group and a date's calendar features come back under their column's name,
a tampered background is refused, and a model without an explainer gets a clear 422."""

from __future__ import annotations

import json
import sys

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

import explained
import try_bundle
from sail_pipelines.contract.data import json_records
from sail_pipelines.errors import SailError
from sail_pipelines.inference import batch_io, explain, predict
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import BACKGROUND, BundleRejected, load_bundle

SOURCES = [c.name for c in explained.FEATURES]
MODELS = {
    "forest-classifier": (
        lambda: RandomForestClassifier(50, max_depth=5, random_state=0),
        "classification",
    ),
    "logistic": (lambda: LogisticRegression(), "classification"),
    "lightgbm": (lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1), "classification"),
    "forest-regressor": (
        lambda: RandomForestRegressor(50, max_depth=6, random_state=0),
        "regression",
    ),
    "ridge": (lambda: Ridge(), "regression"),
    "boosted-regressor": (lambda: HistGradientBoostingRegressor(max_iter=30), "regression"),
    "scaled-ridge": (lambda: make_pipeline(StandardScaler(), Ridge()), "regression"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def served(request, tmp_path_factory):
    make, task = MODELS[request.param]
    dest = explained.build(tmp_path_factory.mktemp("explain") / "bundle", make(), task)
    bundle = load_bundle(dest, explained.KEY)
    return bundle, create_app(bundle).test_client()


def ask(client, rows, explain_flag="true"):
    return client.post(f"/predict?explain={explain_flag}", json=json_records(rows))


def test_contributions_add_up_to_the_models_own_output_on_served_requests(served):
    bundle, client = served
    rows = explained.frame(30, 5)
    answer = ask(client, rows)
    body = answer.get_json()
    assert answer.status_code == 200, body
    model = bundle.model
    transformed = bundle.transformer.transform(rows)
    for i, item in enumerate(body["explanations"]):
        assert set(item["contributions"]) == set(SOURCES)  # source columns only
        total = item["base_value"] + sum(item["contributions"].values())
        assert total == pytest.approx(item["output"], abs=1e-6 * max(1, abs(item["output"])))
        if item["space"] == "probability":
            k = list(model.classes_).index(item["class"])
            assert item["output"] == pytest.approx(
                body["probabilities"][i][item["class"]], abs=1e-9
            )
            assert k >= 0
        elif item["space"] == "value":
            assert item["output"] == pytest.approx(body["predictions"][i], rel=1e-9)
        else:  # log-odds of the positive class
            assert item["class"] == "yes"
            raw = (
                model.predict(transformed[i : i + 1], raw_score=True)
                if isinstance(model, lightgbm.LGBMClassifier)
                else model.decision_function(transformed[i : i + 1])
            )
            assert item["output"] == pytest.approx(float(raw[0]), abs=1e-6)


def test_the_column_the_target_depends_on_carries_the_contributions(served):
    _, client = served
    body = ask(client, explained.frame(60, 6)).get_json()
    absolute = np.abs([[e["contributions"][c] for c in SOURCES] for e in body["explanations"]])
    assert absolute[:, SOURCES.index("x")].sum() >= 0.9 * absolute.sum()


def test_without_explain_there_are_no_explanations_and_a_bad_flag_is_a_400(served):
    _, client = served
    rows = explained.frame(2, 7)
    assert "explanations" not in ask(client, rows, "false").get_json()
    answer = ask(client, rows, "maybe")
    assert answer.status_code == 400 and answer.get_json()["field"] == "explain"


@pytest.mark.parametrize(
    "estimator", [RandomForestClassifier(30, random_state=0), LogisticRegression()]
)
def test_a_compiled_bundle_explains_through_its_graph_once_it_agrees(tmp_path, estimator):
    """The first request's STL runs through scikit-learn and is compared with the graph's; the
    following ones take the graph's, with the same contributions."""
    dest = explained.build(tmp_path / "b", estimator, "classification", compiled=True)
    bundle = load_bundle(dest, explained.KEY)
    client = create_app(bundle).test_client()
    rows = explained.frame(25, 13)
    first = ask(client, rows).get_json()["explanations"]
    assert explain._GRAPH_STL[bundle] is not None
    again = ask(client, rows).get_json()["explanations"]
    for a, b in zip(first, again, strict=True):
        assert b["output"] == pytest.approx(a["output"], abs=1e-9)
        for column in SOURCES:
            assert b["contributions"][column] == pytest.approx(a["contributions"][column], abs=1e-9)


def test_an_explanation_that_overflows_is_a_422_naming_the_column(tmp_path):
    """Log-odds of 1e308 overflow while the probability they give is still 1 (found by
    schemathesis): the answer was a 200 with nulls where numbers are promised."""
    dest = explained.build(tmp_path / "b", LogisticRegression(), "classification")
    client = create_app(load_bundle(dest, explained.KEY)).test_client()
    records = json_records(explained.frame(2, 3))
    records[1]["x"] = 1e308
    answer = client.post("/predict?explain=true", json=records)
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert body["record"] == 1 and body["field"] == "x"
    assert body["error"].startswith("record 1: the explanation is not a finite number")
    assert client.post("/predict", json=records).status_code == 200  # the answer itself is finite


def test_a_value_the_stl_overflows_on_only_when_explaining_is_a_422(tmp_path):
    """The compiled graph answered 1.8e308 (in float32: the largest float) while scikit-learn's
    scaler turned it into infinity for the explainer (found by schemathesis)."""
    dest = try_bundle.build(tmp_path / "b")
    client = create_app(load_bundle(dest, try_bundle.KEY)).test_client()
    record = {"x1": 6.55e16, "x2": 1.7976931348623157e308, "n": 20740, "color": "a"}
    answer = client.post("/predict?explain=true", json=[record])
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert body["field"] == "x2" and "too extreme for the model" in body["error"]


def test_a_tampered_background_is_refused_like_any_bundle_file(tmp_path):
    dest = explained.build(tmp_path / "bundle", Ridge(), "regression")
    stored = json.loads((dest / BACKGROUND).read_text())
    stored["rows"][0][0] += 1.0
    (dest / BACKGROUND).write_text(json.dumps(stored))
    with pytest.raises(BundleRejected, match=f"{BACKGROUND} does not match its signed hash"):
        load_bundle(dest, explained.KEY)


@pytest.mark.parametrize(
    ("estimator", "reason"),
    [
        (KNeighborsRegressor(), "neither a linear model nor a tree ensemble"),
        (SVR(), "neither a linear model nor a tree ensemble"),
        (Ridge(), "no explainer background"),
    ],
)
def test_a_model_without_an_explainer_gets_a_clear_422(tmp_path, estimator, reason):
    background = not isinstance(estimator, Ridge)
    dest = explained.build(tmp_path / "b", estimator, "regression", background=background)
    client = create_app(load_bundle(dest, explained.KEY)).test_client()
    rows = explained.frame(2, 8)
    answer = ask(client, rows)
    assert answer.status_code == 422, answer.get_json()
    assert reason in answer.get_json()["error"] and answer.get_json()["field"] == "explain"
    assert ask(client, rows, "false").status_code == 200  # predictions still serve


def test_a_server_without_shap_answers_422_for_a_tree_model(tmp_path, monkeypatch):
    dest = explained.build(tmp_path / "b", RandomForestRegressor(10, random_state=0), "regression")
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap raises ImportError
    client = create_app(load_bundle(dest, explained.KEY)).test_client()
    answer = ask(client, explained.frame(2, 9))
    assert answer.status_code == 422 and "shap" in answer.get_json()["error"]


def test_the_explainer_is_built_only_when_an_explanation_is_asked_for(tmp_path):
    dest = explained.build(tmp_path / "b", Ridge(), "regression")
    bundle = load_bundle(dest, explained.KEY)
    client = create_app(bundle).test_client()
    ask(client, explained.frame(3, 1), "false")
    assert bundle not in explain._BUILT
    ask(client, explained.frame(3, 1))
    assert bundle in explain._BUILT


def test_batch_explanations_are_columns_that_add_up_and_an_unexplainable_model_stops_first(
    tmp_path,
):
    dest = explained.build(
        tmp_path / "b", RandomForestClassifier(20, random_state=0), "classification"
    )
    rows = explained.frame(40, 3)
    rows.to_csv(tmp_path / "in.csv", index=False)
    predict.run(dest, explained.KEY, tmp_path / "in.csv", tmp_path / "out.csv", explained=True)
    out = pd.read_csv(tmp_path / "out.csv")
    contributions = out[[f"contribution_{c}" for c in SOURCES]]
    assert not any(c.startswith("contribution_colour_") for c in out.columns)
    np.testing.assert_allclose(
        out.explanation_base_value + contributions.sum(axis=1), out.explanation_output, atol=1e-9
    )
    assert (out.explanation_space == "probability").all()
    chosen = [out.loc[i, f"probability_{c}"] for i, c in enumerate(out.explanation_class)]
    np.testing.assert_allclose(out.explanation_output, chosen, atol=1e-9)
    plain = explained.build(tmp_path / "k", KNeighborsRegressor(), "regression")
    with pytest.raises(SailError, match="no explainer"):
        predict.run(plain, explained.KEY, tmp_path / "in.csv", tmp_path / "k.csv", explained=True)
    assert not (tmp_path / "k.csv").exists()


IMAGE_CHILD = """
import json, sys
LEFT_OUT = {"pandas", "sklearn", "scipy", "joblib", "shap", "pydantic"}
class LeftOut:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in LEFT_OUT:
            raise ImportError(f"{name} is not in the image", name=name)
sys.meta_path.insert(0, LeftOut())
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import load_bundle
from sail_pipelines.integrity.signing import HmacKey
client = create_app(load_bundle(__import__("pathlib").Path(sys.argv[1]), HmacKey(b"explain-key")))
client = client.test_client()
for query in ("", "?explain=true"):
    answer = client.post("/predict" + query, json=json.loads(sys.argv[2]))
    print(json.dumps([answer.status_code, answer.get_json()]))
"""


@pytest.mark.parametrize("estimator", [Ridge(), RandomForestRegressor(10, random_state=0)])
def test_a_compiled_image_without_scikit_learn_answers_explain_with_a_422(tmp_path, estimator):
    """The compiled model's image lacks scikit-learn, pandas and shap: it predicts, and an
    explanation is a clear 422, not a 500."""
    import subprocess

    dest = explained.build(tmp_path / "b", estimator, "regression", compiled=True)
    records = json.dumps(json_records(explained.frame(2, 4)))
    child = subprocess.run(
        [sys.executable, "-c", IMAGE_CHILD, str(dest), records],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    (plain_status, plain), (status, body) = (json.loads(line) for line in child.stdout.splitlines())
    assert plain_status == 200 and len(plain["predictions"]) == 2
    assert status == 422 and body["field"] == "explain"
    assert "scikit-learn and pandas" in body["error"]
    with pytest.raises(SailError, match="--explain needs pandas and scikit-learn"):
        batch_io.run(dest, explained.KEY, tmp_path / "in.csv", tmp_path / "o.csv", explained=True)


def test_an_image_packaged_with_explanations_off_names_the_key_to_turn_them_on(
    tmp_path, monkeypatch
):
    """serving.explanations: false puts SAIL_EXPLANATIONS=false in the inference image: an
    explanation is a 422 (and `sail predict --explain` one line) saying how to turn them on,
    even for a model this environment could explain; predictions still serve."""
    dest = explained.build(tmp_path / "b", Ridge(), "regression")
    monkeypatch.setenv(explain.SWITCH, "false")
    client = create_app(load_bundle(dest, explained.KEY)).test_client()
    answer = ask(client, explained.frame(2, 3))
    assert answer.status_code == 422 and answer.get_json()["field"] == "explain"
    assert answer.get_json()["error"] == explain.OFF
    assert "set serving.explanations: true in params.yaml and package again" in explain.OFF
    assert ask(client, explained.frame(2, 3), "false").status_code == 200
    with pytest.raises(SailError, match="serving.explanations: true"):
        batch_io.run(dest, explained.KEY, tmp_path / "in.csv", tmp_path / "o.csv", explained=True)
