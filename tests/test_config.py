"""params.yaml is checked as a whole before any work starts, with a message naming the key."""

import copy

import pytest
from sail_pipelines.config import ProjectPaths, Settings, parse_params
from sail_pipelines.errors import SailError

GOOD = {
    "task": "classification",
    "data": {"raw": "data/raw/data.csv", "target": "target"},
    "transform": "m.transform:build_transformer",
    "split": {"test_size": 0.2, "seed": 42},
    "candidates": [{"name": "lr", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0}}],
    "gate": {"registered_model": "m", "primary_metric": "roc_auc", "tolerance": 0.01, "thresholds": {"roc_auc": {"min": 0.9}}},
}


def test_good_params_parse():
    params = parse_params(GOOD)
    assert params.split.stratify and params.gate.thresholds[0].minimum == 0.9


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("task",), "clustering", "'task' must be one of"),
        (("split", "test_size"), 1.5, "split.test_size"),
        (("split", "seed"), "x", "split.seed"),
        (("candidates",), [], "non-empty list"),
        (("gate", "primary_metric"), "rmse", "not one of"),
        (("gate", "thresholds"), {"rmse": {"max": 1}}, "not a classification metric"),
        (("gate", "thresholds"), {"roc_auc": {"above": 1}}, "'min' and/or 'max'"),
        (("gate", "thresholds"), {"roc_auc": {"min": "high"}}, "must be a number"),
        (("gate", "tolerance"), 2, "gate.tolerance"),
    ],
)
def test_bad_params_name_the_key(path, value, message):
    raw = copy.deepcopy(GOOD)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SailError, match=message):
        parse_params(raw)


def test_duplicate_candidate_names_are_refused():
    raw = copy.deepcopy(GOOD)
    raw["candidates"] = raw["candidates"] * 2
    with pytest.raises(SailError, match="unique"):
        parse_params(raw)


def test_environment_switches_to_team_infrastructure(tmp_path):
    paths = ProjectPaths(tmp_path)
    local = Settings.from_env(paths, {})
    assert local.tracking_uri.startswith("sqlite:///") and local.artifact_location and local.signing_key is None
    team = Settings.from_env(paths, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "SAIL_SIGNING_KEY": "k", "SAIL_DVC_REMOTE_URL": "s3://b/p"})
    assert team.tracking_uri == "http://127.0.0.1:5000" and team.artifact_location is None
    assert team.signing_key == b"k" and team.dvc_remote_url == "s3://b/p"
