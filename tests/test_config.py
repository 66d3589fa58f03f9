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


# A search block on the candidate, so that its keys are refused too.
SEARCHED = copy.deepcopy(GOOD)
SEARCHED["candidates"][0]["search"] = {
    "trials": 4,
    "space": {"C": {"type": "float", "low": 0.1, "high": 10, "log": True}},
}
S = ("candidates", 0, "search")
# Every key of params.yaml, and the whole-file rules: (path, bad value, the whole message after
# "params.yaml: ").
REFUSALS = [
    (
        ("task",),
        "clustering",
        "task = 'clustering' is not allowed; use 'classification' or 'regression'",
    ),
    (
        ("extra",),
        1,
        "extra is not a known key; use one of task, data, transform, split, "
        "candidates, gate, validation, serving, signing, compiled, monitoring (or "
        "remove it)",
    ),
    (
        ("data",),
        "data.csv",
        "data must be a mapping of raw, target, got 'data.csv'; write it as key: value lines",
    ),
    (
        ("data", "raw"),
        None,
        "data.raw = None is not text; write a string",
    ),
    (
        ("data", "target"),
        "",
        "data.target is empty; write a value",
    ),
    (
        ("transform",),
        ["m"],
        "transform = ['m'] is not text; write a string",
    ),
    (
        ("split", "test_size"),
        1.5,
        "split.test_size = 1.5 is outside [0.05, 0.9]; set a number from 0.05 to 0.9",
    ),
    (
        ("split", "seed"),
        "x",
        "split.seed = 'x' is not a whole number; set a whole number",
    ),
    (
        ("split", "stratify"),
        "yes",
        "split.stratify = 'yes' is not true or false; write true or false",
    ),
    (
        ("candidates",),
        [],
        "candidates is empty; give at least one entry",
    ),
    (
        ("candidates", 0, "name"),
        "log reg",
        "candidates[0].name = 'log reg' is not a name; use letters, digits, '-' or '_'",
    ),
    (
        ("candidates", 0, "estimator"),
        None,
        "candidates[0].estimator = None is not text; write a string",
    ),
    (
        ("candidates", 0, "params"),
        [1],
        "candidates[0].params must be a mapping, got [1]; write it as key: value lines",
    ),
    (
        ("candidates", 0, "weight"),
        1,
        "candidates[0].weight is not a known key; use one of name, estimator, "
        "params, search (or remove it)",
    ),
    (
        S + ("space",),
        {},
        "candidates[0].search.space is empty; give at least one entry",
    ),
    (
        S + ("space", "C", "type"),
        "normal",
        "candidates[0].search.space.C.type = 'normal' is not allowed; use 'int', "
        "'float' or 'choice'",
    ),
    (
        S + ("space", "C", "low"),
        "small",
        "candidates[0].search.space.C.low = 'small' is not a number; set a number",
    ),
    (
        S + ("space", "C", "high"),
        0.01,
        "candidates[0].search.space.C has low 0.1 > high 0.01; swap them",
    ),
    (
        S + ("space", "C", "log"),
        "yes",
        "candidates[0].search.space.C.log = 'yes' is not true or false; write true or false",
    ),
    (
        S + ("space", "C", "values"),
        [1, 2],
        "candidates[0].search.space.C of type float takes low, high (and log); give low and high",
    ),
    (
        S + ("trials",),
        0,
        "candidates[0].search.trials = 0 is below 1; set a whole number of at least 1",
    ),
    (
        S + ("timeout",),
        0,
        "candidates[0].search.timeout = 0 is not above 0; set a number above 0",
    ),
    (
        S + ("metric",),
        "rmse",
        "candidates[0].search.metric = 'rmse' is not a classification metric; use "
        "one of roc_auc, f1, accuracy, precision, recall, mcc, balanced_accuracy, "
        "f1_weighted, precision_weighted, recall_weighted",
    ),
    (
        S + ("folds",),
        1,
        "candidates[0].search.folds = 1 is outside [2, 20]; set a whole number from 2 to 20",
    ),
    (
        S + ("seed",),
        1.5,
        "candidates[0].search.seed = 1.5 is not a whole number; set a whole number",
    ),
    (
        S + ("trails",),
        3,
        "candidates[0].search.trails is not a known key; use one of space, trials, "
        "timeout, metric, folds, seed (or remove it)",
    ),
    (
        ("gate", "registered_model"),
        None,
        "gate.registered_model = None is not text; write a string",
    ),
    (
        ("gate", "primary_metric"),
        "rmse",
        "gate.primary_metric = 'rmse' is not a classification metric; use one of "
        "roc_auc, f1, accuracy, precision, recall, mcc, balanced_accuracy, "
        "f1_weighted, precision_weighted, recall_weighted",
    ),
    (
        ("gate", "tolerance"),
        2,
        "gate.tolerance = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("gate", "thresholds"),
        {"rmse": {"max": 1}},
        "gate.thresholds.rmse is not a classification metric; use one of roc_auc, "
        "f1, accuracy, precision, recall, mcc, balanced_accuracy, f1_weighted, "
        "precision_weighted, recall_weighted",
    ),
    (
        ("gate", "thresholds", "roc_auc"),
        {"above": 1},
        "gate.thresholds.roc_auc.above is not a known key; use one of min, max (or remove it)",
    ),
    (
        ("gate", "thresholds", "roc_auc"),
        {},
        "gate.thresholds.roc_auc has no bound; give min and/or max, e.g. {min: 0.9}",
    ),
    (
        ("gate", "thresholds", "roc_auc", "min"),
        "high",
        "gate.thresholds.roc_auc.min = 'high' is not a number; set a number",
    ),
    (
        ("gate", "thresholds", "roc_auc", "max"),
        True,
        "gate.thresholds.roc_auc.max = True is not a number; set a number",
    ),
    (
        ("gate", "regression_rule"),
        "strict",
        "gate.regression_rule = 'strict' is not allowed; use 'confidence' or 'point'",
    ),
    (
        ("gate", "bootstrap"),
        [0.95],
        "gate.bootstrap must be a mapping of level, resamples, seed, got [0.95]; "
        "write it as key: value lines",
    ),
    (
        ("gate", "bootstrap", "level"),
        1.5,
        "gate.bootstrap.level = 1.5 is outside [0.5, 0.999]; set a number from 0.5 to 0.999",
    ),
    (
        ("gate", "bootstrap", "resamples"),
        10,
        "gate.bootstrap.resamples = 10 is outside [100, 100000]; set a whole number "
        "from 100 to 100000",
    ),
    (
        ("gate", "bootstrap", "seed"),
        1.5,
        "gate.bootstrap.seed = 1.5 is not a whole number; set a whole number from 0 to 4294967295",
    ),
    (
        ("gate", "min_test_rows"),
        0,
        "gate.min_test_rows = 0 is outside [1, 1000000000]; set a whole number from "
        "1 to 1000000000",
    ),
    (
        ("gate", "min_rows_per_class"),
        "ten",
        "gate.min_rows_per_class = 'ten' is not a whole number; set a whole number "
        "from 1 to 1000000000",
    ),
    (
        ("gate", "suspicious_drop"),
        -0.1,
        "gate.suspicious_drop = -0.1 is below 0; set a number of at least 0",
    ),
    (
        ("gate", "holdout_rows"),
        True,
        "gate.holdout_rows = True is not a whole number; set a whole number from 1 to 10000000",
    ),
    (
        ("gate", "slices", "columns"),
        "sex",
        "gate.slices.columns must be a list, got 'sex'; write it as [a, b, ...]",
    ),
    (
        ("gate", "slices", "min_rows"),
        0,
        "gate.slices.min_rows = 0 is outside [1, 1000000000]; set a whole number "
        "from 1 to 1000000000",
    ),
    (
        ("gate", "slices", "min_rows_per_class"),
        2.5,
        "gate.slices.min_rows_per_class = 2.5 is not a whole number; set a whole "
        "number from 1 to 1000000000",
    ),
    (
        ("gate", "slices", "thresholds"),
        {"r2": {"min": 0.1}},
        "gate.slices.thresholds.r2 is not a classification metric; use one of "
        "roc_auc, f1, accuracy, precision, recall, mcc, balanced_accuracy, "
        "f1_weighted, precision_weighted, recall_weighted",
    ),
    (
        ("gate", "slices", "no_regression"),
        "yes",
        "gate.slices.no_regression = 'yes' is not true or false; write true or false",
    ),
    (
        ("validation", "range_margin"),
        -1,
        "validation.range_margin = -1 is below 0; set a number of at least 0",
    ),
    (
        ("validation", "max_null_rate"),
        2,
        "validation.max_null_rate = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("validation", "max_mean_shift"),
        "big",
        "validation.max_mean_shift = 'big' is not a number; set a number of at least 0",
    ),
    (
        ("validation", "max_std_ratio"),
        0.5,
        "validation.max_std_ratio = 0.5 is below 1; set a number of at least 1",
    ),
    (
        ("validation", "min_rows"),
        0,
        "validation.min_rows = 0 is below 1; set a whole number of at least 1",
    ),
    (
        ("validation", "max_missing_target"),
        1.2,
        "validation.max_missing_target = 1.2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("serving", "out_of_range"),
        "clip",
        "serving.out_of_range = 'clip' is not allowed; use 'flag' or 'refuse'",
    ),
    (
        ("signing", "scheme"),
        "rsa",
        "signing.scheme = 'rsa' is not allowed; use 'ed25519' or 'hmac-sha256'",
    ),
    (
        ("compiled", "enabled"),
        "on",
        "compiled.enabled = 'on' is not true or false; write true or false",
    ),
    (
        ("compiled", "max_probability_diff"),
        2,
        "compiled.max_probability_diff = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("compiled", "max_value_diff"),
        -1,
        "compiled.max_value_diff = -1 is below 0; set a number of at least 0",
    ),
    (
        ("compiled", "max_label_mismatches"),
        0.5,
        "compiled.max_label_mismatches = 0.5 is not a whole number; set a whole "
        "number of at least 0",
    ),
    (
        ("monitoring", "max_psi"),
        -1,
        "monitoring.max_psi = -1 is below 0; set a number of at least 0",
    ),
    (
        ("monitoring", "max_ks"),
        2,
        "monitoring.max_ks = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "min_p_value"),
        2,
        "monitoring.min_p_value = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "max_out_of_range"),
        2,
        "monitoring.max_out_of_range = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "max_missing"),
        2,
        "monitoring.max_missing = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "max_window_psi"),
        -1,
        "monitoring.max_window_psi = -1 is below 0; set a number of at least 0",
    ),
    (
        ("monitoring", "window_hours"),
        0,
        "monitoring.window_hours = 0 is below 0.0166667; set a number of at least 0.0166667",
    ),
    (
        ("monitoring", "min_rows"),
        0,
        "monitoring.min_rows = 0 is outside [1, 1000000000]; set a whole number from "
        "1 to 1000000000",
    ),
    (
        ("monitoring", "bins"),
        1,
        "monitoring.bins = 1 is outside [2, 100]; set a whole number from 2 to 100",
    ),
    (
        ("monitoring", "max_psy"),
        1,
        "monitoring.max_psy is not a known key; use one of max_psi, max_ks, "
        "min_p_value, max_out_of_range, max_missing, max_window_psi, window_hours, "
        "min_rows, bins (or remove it)",
    ),
]


def test_every_key_of_params_yaml_has_a_refusal():
    """The table above covers each key the models know (a new key needs its case)."""
    from sail_pipelines.config.params_file import ParamsFile

    def keys(model, prefix):
        for name, info in model.model_fields.items():
            yield prefix + (name,)
            inner = getattr(info.annotation, "model_fields", None)
            if inner is not None:
                yield from keys(info.annotation, prefix + (name,))

    refused = {tuple(k for k in path if k != 0) for path, _, _ in REFUSALS}
    refused |= {path[:-1] for path in refused}
    missing = [k for k in keys(ParamsFile, ()) if k not in refused]
    assert not missing


@pytest.mark.parametrize("path,value,message", REFUSALS, ids=[m[:48] for *_, m in REFUSALS])
def test_each_key_is_refused_on_one_line_naming_the_file_key_and_fix(path, value, message):
    raw = copy.deepcopy(SEARCHED)
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    with pytest.raises(SailError) as refused:
        parse_params(raw)
    assert str(refused.value) == f"params.yaml: {message}"
    assert "; " in message and "\n" not in message  # the problem, then its fix


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
