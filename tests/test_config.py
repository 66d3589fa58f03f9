"""params.yaml and infrastructure.yaml are checked as a whole before any work starts, with one
line naming the file, the key and the fix; the environment overrides the team file."""

import copy
import json
import re
import typing
from pathlib import Path

import pytest
import yaml
from cookiecutter.main import cookiecutter
from pydantic import ValidationError

from conftest import TEMPLATE
from sail_pipelines.config import (
    TEAM_FILE,
    TEAM_KEYS,
    ProjectPaths,
    Settings,
    parse_params,
)
from sail_pipelines.config.schema import schemas
from sail_pipelines.config.team_file import TeamVariables
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


def test_the_checked_file_is_the_frozen_config_the_steps_take():
    """One model: the steps' names over the file's keys, frozen, dumped in the file's shape, and
    built in code with the file's keys only (a step's name for a key is refused there too)."""
    params = parse_params(GOOD)
    assert (params.raw_data, params.target, params.signing_scheme) == (
        "data/raw/data.csv",
        "target",
        "ed25519",
    )
    with pytest.raises(ValidationError, match="frozen"):
        params.split.test_size = 0.5
    dumped = params.gate.model_dump(by_alias=True)["thresholds"]
    assert dumped == {"roc_auc": {"min": 0.9, "max": None}}
    with pytest.raises(ValidationError, match="use one of min, max"):
        type(params.gate)(
            primary_metric="f1", registered_model="m", thresholds={"f1": {"minimum": 1}}
        )


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
        "candidates, gate, validation, serving, signing, compiled, monitoring, promotion "
        "(or remove it)",
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
        ("serving", "outliers"),
        "drop",
        "serving.outliers = 'drop' is not allowed; use 'flag' or 'refuse'",
    ),
    (
        ("serving", "outlier_quantile"),
        1,
        "serving.outlier_quantile = 1 is outside [0.5, 0.9999]; set a number from 0.5 to 0.9999",
    ),
    (
        ("serving", "explanations"),
        "maybe",
        "serving.explanations = 'maybe' is not true or false; write true or false",
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
        ("monitoring", "max_outlier_share"),
        -1,
        "monitoring.max_outlier_share = -1 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "max_missing"),
        2,
        "monitoring.max_missing = 2 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("monitoring", "max_share_change"),
        2,
        "monitoring.max_share_change = 2 is outside [0, 1]; set a number from 0 to 1",
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
        "min_p_value, max_out_of_range, max_missing, max_outlier_share, max_share_change, "
        "max_window_psi, "
        "window_hours, min_rows, bins (or remove it)",
    ),
    (
        ("promotion", "min_shadow_agreement"),
        1.5,
        "promotion.min_shadow_agreement = 1.5 is outside [0, 1]; set a number from 0 to 1",
    ),
    (
        ("promotion", "min_live_requests"),
        0,
        "promotion.min_live_requests = 0 is below 1; set a whole number of at least 1",
    ),
    (
        ("promotion", "shadow_tolerance"),
        -1,
        "promotion.shadow_tolerance = -1 is below 0; set a number of at least 0",
    ),
    (
        ("promotion", "require_live_evidence"),
        "yes please",
        "promotion.require_live_evidence = 'yes please' is not true or false; write true or false",
    ),
]


def test_every_key_of_params_yaml_has_a_refusal():
    """The table above covers each key the models know (a new key needs its case)."""
    from sail_pipelines.config import Params

    def models(annotation):
        """The models a field holds: itself, in a list, or optional (a mapping's are keyed by
        names the file chooses, so they are left out: the steps get those as a tuple)."""
        if hasattr(annotation, "model_fields"):
            return [annotation]
        if typing.get_origin(annotation) in (dict, tuple):
            return []
        return [m for arg in typing.get_args(annotation) for m in models(arg)]

    def keys(model, prefix):
        for name, info in model.model_fields.items():
            yield prefix + (name,)
            for inner in models(info.annotation):
                yield from keys(inner, prefix + (name,))

    refused = {tuple(k for k in path if k != 0) for path, _, _ in REFUSALS}
    refused |= {path[:-1] for path in refused}
    missing = [k for k in keys(Params, ()) if k not in refused]
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


def test_several_problems_are_one_line_that_counts_the_others():
    raw = copy.deepcopy(GOOD)
    raw["split"] = {"test_size": 2, "seed": "x", "stratify": "no"}
    with pytest.raises(SailError) as refused:
        parse_params(raw)
    assert str(refused.value) == (
        "params.yaml: split.test_size = 2 is outside [0.05, 0.9]; set a number from 0.05 to 0.9 "
        "(and 2 more problems)"
    )
    assert isinstance(refused.value.__cause__, ValidationError)  # what SAIL_DEBUG=1 shows


def test_a_search_block_parses_into_its_dimensions():
    raw = copy.deepcopy(SEARCHED)
    raw["candidates"][0]["search"] = {
        "timeout": 30,
        "space": {
            "max_iter": {"type": "int", "low": 10, "high": 200, "log": True},
            "class_weight": {"type": "choice", "values": [None, "balanced"]},
        },
    }
    search = parse_params(raw).candidates[0].search
    assert [(d.name, d.kind, d.low, d.high, d.log, d.choices) for d in search.space] == [
        ("max_iter", "int", 10, 200, True, ()),
        ("class_weight", "choice", None, None, False, (None, "balanced")),
    ]
    assert (search.metric, search.trials, search.timeout, search.folds, search.seed) == (
        "roc_auc",
        None,
        30.0,
        5,
        42,
    )


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


# Every key of infrastructure.yaml, a secret in each place one is reached for, and the file's shape:
# (content, the whole message after "infrastructure.yaml: "). Secrets in messages are redacted.
TEAM_REFUSALS = [
    (
        "aws:\n  region: Europe West\n",
        "aws.region: not an AWS region name such as eu-west-1, got 'Europe West'",
    ),
    (
        "aws:\n  profile: my profile\n",
        "aws.profile: not an AWS profile name, got 'my profile'",
    ),
    (
        "aws:\n  role_arn: sail-role\n",
        "aws.role_arn: not an IAM role ARN (arn:aws:iam::<12-digit "
        "account>:role/<name>), got 'sail-role'",
    ),
    (
        "aws:\n  endpoint_url: 127.0.0.1:9000\n",
        "aws.endpoint_url: the S3 endpoint must be an http(s)://host[:port] URL, got "
        "'127.0.0.1:9000'",
    ),
    (
        "aws:\n  access_key_id: AKIA\n",
        "aws.access_key_id is a secret and never goes in this committed file; set "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the "
        "environment",
    ),
    (
        "dvc:\n  remote_url: gs://bucket/x\n",
        "dvc.remote_url: a DVC remote must be s3://bucket/path or a local folder, "
        "got 'gs://bucket/x'",
    ),
    (
        "mlflow:\n  tracking_uri: https://ci:pw@mlflow.example.com\n",
        "mlflow.tracking_uri: a tracking URI in this committed file takes no "
        "user:password: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in "
        "the environment, got 'https://***@mlflow.example.com'",
    ),
    (
        "mlflow:\n  password: pw\n",
        "mlflow.password is a secret and never goes in this committed file; set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
        "MLFLOW_TRACKING_TOKEN in the environment",
    ),
    (
        "registry:\n  url: https://127.0.0.1:5000\n",
        "registry.url: write the registry without a scheme, as "
        "host[:port][/namespace] (e.g. 127.0.0.1:5000), got 'https://127.0.0.1:5000'",
    ),
    (
        "registry:\n  username: ci user\n",
        "registry.username: not a user name (letters, digits, . @ + = , - _), got 'ci user'",
    ),
    (
        "registry:\n  base_image: python 3.11\n",
        "registry.base_image: not an image reference, got 'python 3.11'",
    ),
    (
        "registry:\n  password: hunter2\n",
        "registry.password is a secret and never goes in this committed file; set "
        "SAIL_REGISTRY_PASSWORD in the environment",
    ),
    (
        "retry:\n  attempts: 21\n",
        "retry.attempts must be a whole number from 1 to 20, got 21",
    ),
    (
        "retry:\n  backoff_seconds: -1\n",
        "retry.backoff_seconds must be a number of seconds from 0 to 300, got -1",
    ),
    (
        "retry:\n  tries: 3\n",
        "retry.tries is not a known key; use one of attempts, backoff_seconds (or remove it)",
    ),
    (
        "signing_key: abc\n",
        "signing_key is a secret and never goes in this committed file; set "
        "SAIL_SIGNING_KEY in the environment",
    ),
    (
        "mlfow:\n  tracking_uri: http://x\n",
        "mlfow is not a known key; use one of aws, dvc, mlflow, registry, retry (or remove it)",
    ),
    (
        "dvc: s3://bucket\n",
        "dvc must be a mapping of keys (remote_url), got 's3://bucket'; indent its keys",
    ),
    (
        "- aws\n",
        "expected a mapping of sections (aws, dvc, mlflow, registry, retry) at the "
        "top level; write each section as `name:` with its keys indented below",
    ),
]


def test_every_key_of_infrastructure_yaml_has_a_refusal():
    refused = {re.match(r"(\w+):\n  (\w+):", c) for c, _ in TEAM_REFUSALS}
    assert set(TEAM_KEYS) <= {f"{m[1]}.{m[2]}" for m in refused if m}


@pytest.mark.parametrize("content,message", TEAM_REFUSALS, ids=[m[:40] for _, m in TEAM_REFUSALS])
def test_each_team_key_is_refused_on_one_line_naming_the_file_key_and_fix(
    tmp_path, content, message
):
    (tmp_path / TEAM_FILE).write_text(content)
    with pytest.raises(SailError) as refused:
        Settings.from_env(ProjectPaths(tmp_path), {})
    assert str(refused.value) == f"{TEAM_FILE}: {message}"
    assert "\n" not in message and ":pw@" not in message


def test_the_environment_overrides_through_pydantic_settings(tmp_path, monkeypatch):
    """TEAM_KEYS' variables, read by pydantic-settings: the first one set wins, a blank one is
    unset, a variable beats the file and a bad value names the variable."""
    (tmp_path / TEAM_FILE).write_text("aws:\n  region: eu-west-1\n  profile: team\n")
    for name in {n for names in TEAM_KEYS.values() for n in names}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    monkeypatch.setenv("SAIL_RETRY_ATTEMPTS", "7")
    assert TeamVariables().aws__region == "us-east-2"  # pydantic-settings' own os.environ source
    settings = Settings.from_env(ProjectPaths(tmp_path))
    assert (settings.aws.region, settings.aws.profile, settings.retry.attempts) == (
        "us-east-2",
        "team",
        7,
    )
    assert dict(settings.origins) == {
        "aws.region": "AWS_DEFAULT_REGION",
        "aws.profile": TEAM_FILE,
        "retry.attempts": "SAIL_RETRY_ATTEMPTS",
    }
    both = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-east-2"}
    assert Settings.from_env(ProjectPaths(tmp_path), both).aws.region == "eu-central-1"
    with pytest.raises(SailError) as refused:
        Settings.from_env(ProjectPaths(tmp_path), {"AWS_DEFAULT_REGION": "Europe"})
    assert str(refused.value) == (
        "AWS_DEFAULT_REGION: not an AWS region name such as eu-west-1, got 'Europe'"
    )


def test_the_template_ships_the_schemas_the_models_generate():
    """`python -m sail_pipelines.config.schema` rewrites them after a model changes."""
    shipped = TEMPLATE / "{{cookiecutter.project_slug}}" / "schemas"
    assert {p.name: p.read_text() for p in shipped.iterdir()} == schemas()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_rendered_files_name_and_meet_their_schemas(tmp_path, task):
    """What an editor's YAML language server checks: the first line names the schema, which the
    generated files meet and a wrong value breaks."""
    jsonschema = pytest.importorskip("jsonschema")
    # Rendered only: the hooks (git, DVC, the example data) add nothing to these two files.
    rendered = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context={"task": task},
        output_dir=str(tmp_path),
        accept_hooks=False,
    )
    project = Path(rendered)
    for name in ("params", "infrastructure"):
        text = (project / f"{name}.yaml").read_text()
        assert text.splitlines()[0] == f"# yaml-language-server: $schema=schemas/{name}.schema.json"
        schema = json.loads((project / "schemas" / f"{name}.schema.json").read_text())
        jsonschema.validate(yaml.safe_load(text), schema)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["gate"]["tolerance"] = 1.5
    with pytest.raises(jsonschema.ValidationError, match="1.5 is greater than the maximum of 1"):
        jsonschema.validate(
            params, json.loads((project / "schemas/params.schema.json").read_text())
        )
