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
    "candidates": [
        {"name": "lr", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0}}
    ],
    "gate": {
        "registered_model": "m",
        "primary_metric": "roc_auc",
        "tolerance": 0.01,
        "thresholds": {"roc_auc": {"min": 0.9}},
    },
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
        (("gate", "regression_rule"), "strict", "regression_rule must be one of confidence, point"),
        (("gate", "bootstrap"), {"level": 1.5}, "gate.bootstrap.level"),
        (("gate", "bootstrap"), {"resamples": 10}, "resamples' must be a whole number from 100"),
        (("gate", "bootstrap"), {"seed": 1.5}, "gate.bootstrap.seed"),
        (("gate", "bootstrap"), [0.95], "gate.bootstrap' must be a mapping"),
        (("gate", "min_test_rows"), 0, "gate.min_test_rows"),
        (("gate", "min_rows_per_class"), "ten", "gate.min_rows_per_class"),
        (("gate", "suspicious_drop"), -0.1, "gate.suspicious_drop"),
        (("gate", "holdout_rows"), True, "gate.holdout_rows"),
        (("gate", "slices"), {"columns": "sex"}, "slices.columns must be a list of column names"),
        (("gate", "slices"), {"columns": ["sex"], "min_rows": 0}, "gate.slices.min_rows"),
        (
            ("gate", "slices"),
            {"thresholds": {"r2": {"min": 0.1}}},
            "gate.slices.thresholds.r2 is not a classification metric",
        ),
        (("gate", "slices"), {"no_regression": "yes"}, "no_regression' must be true or false"),
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


def test_gate_settings_default_to_the_old_behaviour_and_parse_when_given():
    defaults = parse_params(GOOD).gate
    assert defaults.regression_rule == "point" and defaults.bootstrap.resamples == 1000
    assert defaults.slices.columns == () and defaults.suspicious_drop == 0.1
    raw = copy.deepcopy(GOOD)
    raw["gate"].update(
        regression_rule="confidence",
        bootstrap={"level": 0.9, "resamples": 500, "seed": 3},
        min_test_rows=20,
        min_rows_per_class=4,
        suspicious_drop=None,
        holdout_rows=100,
        slices={
            "columns": ["region", "region"],
            "min_rows": 12,
            "thresholds": {"f1": {"min": 0.7}},
            "no_regression": True,
        },
    )
    gate = parse_params(raw).gate
    assert (
        gate.regression_rule,
        gate.bootstrap.level,
        gate.bootstrap.resamples,
        gate.bootstrap.seed,
    ) == ("confidence", 0.9, 500, 3)
    assert (
        gate.min_test_rows,
        gate.min_rows_per_class,
        gate.suspicious_drop,
        gate.holdout_rows,
    ) == (20, 4, None, 100)
    assert (
        gate.slices.columns == ("region",)
        and gate.slices.min_rows == 12
        and gate.slices.no_regression
    )
    assert gate.slices.thresholds[0].metric == "f1" and gate.slices.thresholds[0].minimum == 0.7


def test_duplicate_candidate_names_are_refused():
    raw = copy.deepcopy(GOOD)
    raw["candidates"] = raw["candidates"] * 2
    with pytest.raises(SailError, match="unique"):
        parse_params(raw)


def test_environment_switches_to_team_infrastructure(tmp_path):
    paths = ProjectPaths(tmp_path)
    local = Settings.from_env(paths, {})
    assert (
        local.tracking_uri.startswith("sqlite:///")
        and local.artifact_location
        and local.signing_key is None
    )
    team = Settings.from_env(
        paths,
        {
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "SAIL_SIGNING_KEY": "k",
            "SAIL_DVC_REMOTE_URL": "s3://b/p",
        },
    )
    assert team.tracking_uri == "http://127.0.0.1:5000" and team.artifact_location is None
    assert team.signing_key == b"k" and team.dvc_remote_url == "s3://b/p"
