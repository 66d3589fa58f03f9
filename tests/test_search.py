"""Hyperparameter search (training/search.py): refusals, CV on the training split only,
reproducibility, shared studies across worker processes, signed trials, nested MLflow runs,
the report section and DVC caching."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_regression
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from conftest import TEST_KEY, ok, sail
from sail_pipelines.config import (
    ProjectPaths,
    SearchConfig,
    Settings,
    load_params,
    parse_params,
)
from sail_pipelines.contract import stl
from sail_pipelines.contract.data import read_csv
from sail_pipelines.contract.schema import load_schema
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle
from sail_pipelines.training import search
from sail_pipelines.training.train import make_estimator

SEARCH = {
    "trials": 4,
    "space": {
        "C": {"type": "float", "low": 0.01, "high": 10, "log": True},
        "class_weight": {"type": "choice", "values": [None, "balanced"]},
    },
}
LR = "logistic_regression"
GOOD = {
    "task": "classification",
    "data": {"raw": "data/raw/data.csv", "target": "target"},
    "transform": "m.transform:build_transformer",
    "split": {"test_size": 0.2, "seed": 42},
    "candidates": [{"name": "lr", "estimator": "sklearn.linear_model.LogisticRegression"}],
    "gate": {"registered_model": "m", "primary_metric": "roc_auc"},
}


def with_search(block):
    raw = copy.deepcopy(GOOD)
    raw["candidates"][0]["search"] = block
    return raw


def test_a_search_block_parses_with_its_defaults():
    candidate = parse_params(with_search(SEARCH)).candidates[0]
    # gate's metric, split's seed
    assert candidate.search == SearchConfig(
        space={
            "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
            "class_weight": {"type": "choice", "values": [None, "balanced"]},
        },
        metric="roc_auc",
        trials=4,
        timeout=None,
        folds=5,
        seed=42,
    )


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"space": {"C": {"type": "float", "low": 10, "high": 1}}},
            "has low 10 > high 1; swap them",
        ),
        (
            {"space": {"C": {"type": "normal", "low": 0, "high": 1}}},
            "type = 'normal' is not allowed; use 'int', 'float' or 'choice'",
        ),
        ({"space": {"C": 3}}, "C must be a mapping of type, low, high, log, values, got 3"),
        (
            {"space": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "is log-scaled; make low above 0 or set log: false",
        ),
        ({"space": {"max_iter": {"type": "int", "low": 1.5, "high": 9}}}, "whole numbers"),
        ({"space": {"C": {"type": "choice", "values": []}}}, "values is empty; give at least one"),
        (
            {"space": {"C": {"type": "float", "low": 0.1, "high": 1, "step": 2}}},
            "C.step is not a known key; use one of type, low, high, log, values",
        ),
        ({"space": {}}, "space is empty; give at least one entry"),
        ({"trials": 0}, "trials = 0 is below 1; set a whole number of at least 1"),
        ({"trials": None, "timeout": 0}, "timeout = 0 is not above 0; set a number above 0"),
        ({"trials": None}, "needs a budget"),
        ({"metric": "rmse"}, "metric = 'rmse' is not a classification metric; use one of roc_auc"),
        ({"folds": 1}, "folds = 1 is outside [2, 20]; set a whole number from 2 to 20"),
        ({"seed": "x"}, "seed = 'x' is not a whole number; set a whole number"),
        ({"trails": 3}, "trails is not a known key; use one of space, trials"),
    ],
)
def test_a_bad_search_block_is_refused_naming_the_key(change, message):
    block = {**SEARCH, **change}
    block = {k: v for k, v in block.items() if v is not None}
    with pytest.raises(SailError, match="candidates\\[0\\].search") as caught:
        parse_params(with_search(block))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_search_storage_comes_from_the_environment_and_stays_out_of_repr(tmp_path):
    settings = Settings.from_env(
        ProjectPaths(tmp_path), {"SAIL_SEARCH_STORAGE": "postgresql://u:pw@db/optuna"}
    )
    assert settings.search_storage == "postgresql://u:pw@db/optuna" and "pw" not in repr(settings)


def test_a_space_naming_a_parameter_the_estimator_lacks_is_refused():
    config = parse_params(
        with_search({**SEARCH, "space": {"strength": {"type": "float", "low": 0, "high": 1}}})
    )
    candidate = config.candidates[0]
    with pytest.raises(SailError, match="names strength, which LogisticRegression does not take"):
        search.check_space(candidate.name, candidate.search, make_estimator(candidate))


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path):
    with pytest.raises(SailError, match="cannot open the search storage nosuch://") as caught:
        search.open_storage("nosuch://host/db")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "message, calls",
    [
        ('relation "alembic_version" already exists', 2),  # another worker's table: retried
        ("permission denied for schema public", 1),  # no race: one line at once
    ],
)
def test_only_a_table_created_by_another_worker_is_retried(tmp_path, monkeypatch, message, calls):
    import sqlalchemy

    real, made = optuna.storages.RDBStorage, []

    def storage(url, **kwargs):
        made.append(url)
        if len(made) == 1:
            raise sqlalchemy.exc.ProgrammingError("CREATE TABLE", {}, Exception(message))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    if calls == 1:
        with pytest.raises(SailError, match=f"cannot open the search storage .*{message}"):
            search.open_storage(url)
    else:
        assert search.open_storage(url) is not None
    assert len(made) == calls


# --- the shipped example, on the training split of the session's project ---------------------


def example(project, name=LR):
    """The candidate as params.yaml ships it, and the problem `sail train` hands its search."""
    paths = ProjectPaths(project)
    params, schema = load_params(paths), load_schema(paths.schema)
    train = read_csv(paths.train_csv)
    transformer = stl.build(params.transform, schema, paths.src)
    candidate = next(c for c in params.candidates if c.name == name)
    problem = search.Problem(
        train[schema.feature_names],
        train[schema.target.name],
        params.task,
        lambda: clone(transformer),
        lambda p: make_estimator(candidate.model_copy(update={"params": p})),
    )
    return candidate, problem


@pytest.mark.slow
def test_the_search_beats_or_equals_the_fixed_params_on_cv(pipeline_project):
    candidate, problem = example(pipeline_project)
    outcome = search.run(candidate.name, candidate.search, candidate.params, problem, "t1")
    cuts = search.folds(candidate.name, candidate.search, problem.task, problem.target)
    fixed = search.cv_score(candidate.params, problem, candidate.search.metric, cuts)
    assert outcome.summary["best"]["score"] >= fixed
    assert outcome.summary["trials"] == candidate.search.trials == 8
    assert [t["number"] for t in outcome.summary["history"]] == list(range(8))
    assert outcome.params == {**candidate.params, **outcome.summary["best"]["params"]}


@pytest.mark.slow
def test_the_same_seed_gives_the_same_search_and_another_seed_another(pipeline_project):
    candidate, problem = example(pipeline_project)
    config = candidate.search.model_copy(update={"trials": 5, "folds": 3})
    runs = [
        search.run(LR, config.model_copy(update={"seed": seed}), candidate.params, problem, "t2")
        for seed in (7, 7, 8)
    ]
    trials = [[(t["params"], t["score"], t["state"]) for t in r.summary["history"]] for r in runs]
    assert trials[0] == trials[1] and runs[0].params == runs[1].params
    assert trials[2] != trials[0]


def test_a_time_budget_alone_ends_the_search(pipeline_project):
    candidate, problem = example(pipeline_project)
    config = candidate.search.model_copy(update={"trials": None, "timeout": 1.0, "folds": 2})
    outcome = search.run(LR, config, candidate.params, problem, "t3")
    assert outcome.summary["trials"] >= 1 and outcome.summary["seconds"] < 30


def test_when_every_trial_fails_the_search_says_why_in_one_line(pipeline_project):
    candidate, problem = example(pipeline_project)
    space = {"solver": {"type": "choice", "values": ["no-such-solver"]}}
    config = SearchConfig(space=space, metric="roc_auc", trials=2, folds=2, seed=42)
    with pytest.raises(
        SailError, match="no search trial finished \\(first error: .*solver"
    ) as caught:
        search.run(LR, config, candidate.params, problem, "t4")
    assert "\n" not in str(caught.value)


def test_a_regression_search_minimises_rmse():
    x, y = make_regression(n_samples=120, n_features=5, noise=20.0, random_state=0)
    problem = search.Problem(
        pd.DataFrame(x), pd.Series(y), "regression", StandardScaler, lambda p: Ridge(**p)
    )
    config = SearchConfig(
        space={"alpha": {"type": "float", "low": 0.001, "high": 1000.0, "log": True}},
        metric="rmse",
        trials=6,
        folds=3,
        seed=1,
    )
    outcome = search.run("ridge", config, {"alpha": 500.0}, problem, "t5")
    cuts = search.folds("ridge", config, "regression", problem.target)
    assert outcome.summary["direction"] == "minimize"
    assert outcome.summary["best"]["score"] < search.cv_score(
        {"alpha": 500.0}, problem, "rmse", cuts
    )


# --- several workers, one study ----------------------------------------------------------------


class Stalls(BaseEstimator, ClassifierMixin):
    """Never finishes fitting: its worker is surely mid-trial when it is killed."""

    def __init__(self, C=1.0, class_weight=None, max_iter=100):
        self.C, self.class_weight, self.max_iter = C, class_weight, max_iter

    def fit(self, features, target):
        time.sleep(3600)


def _worker(project, config, url, results, stalls=False):
    candidate, problem = example(project)
    if stalls:
        problem = dataclasses.replace(problem, make_estimator=lambda params: Stalls(**params))
    results.put(search.run(LR, config, candidate.params, problem, "shared", url).summary)


@pytest.mark.slow
def test_two_workers_sharing_one_study_run_the_budget_exactly_once(pipeline_project, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = example(pipeline_project)[0].search.model_copy(update={"trials": 12, "folds": 3})
    context = multiprocessing.get_context("fork")  # both start at once, from this process's imports
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(pipeline_project, config, url, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    summaries = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    trials = optuna.load_study(study_name=summaries[0]["study"], storage=url).get_trials()
    assert sorted(t.number for t in trials) == list(range(12))  # exactly the budget, no extra trial
    ran = {
        pid: {t.number for t in trials if f":{pid}-" in t.user_attrs["worker"]}
        for pid in (w.pid for w in workers)
    }
    # both worked, never the same trial
    assert all(ran.values()) and not set.intersection(*ran.values())
    assert set.union(*ran.values()) == set(range(12))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # Each worker waited for the other, so both record the whole study.
    assert summaries[0]["history"] == summaries[1]["history"] and summaries[0]["trials"] == 12


def test_a_killed_workers_trial_goes_stale_and_the_other_worker_finishes(
    pipeline_project, tmp_path, monkeypatch
):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    candidate, problem = example(pipeline_project)
    config = candidate.search.model_copy(update={"trials": 5, "folds": 2})
    name = search.study_name(LR, config, candidate.params, "shared")
    context = multiprocessing.get_context("fork")
    doomed = context.Process(
        target=_worker, args=(pipeline_project, config, url, context.Queue(), True)
    )
    doomed.start()
    storage = search.open_storage(url)
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline:  # until it is inside its first trial
        time.sleep(0.2)
        with contextlib.suppress(KeyError):  # no such study yet
            study_id = storage.get_study_id_from_name(name)
            trials = storage.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,))
            running = [t for t in trials if "worker" in t.user_attrs]
    assert running, "the doomed worker never started a trial"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    monkeypatch.setattr("sail_pipelines.training.study.GRACE_SECONDS", 1)
    summary = search.run(LR, config, candidate.params, problem, "shared", url).summary
    states = [t["state"] for t in summary["history"]]
    assert len(states) == 5 and states.count("FAIL") == 1
    stale = next(t for t in summary["history"] if t["state"] == "FAIL")
    assert f":{doomed.pid}-" in stale["worker"] and "no heartbeat" in stale["error"]


# --- the pipeline: signed trials, MLflow, report, refusals, the test split, DVC ---------------


def test_the_bundle_carries_the_signed_search_summary(pipeline_project):
    bundle = load_bundle(
        pipeline_project / "models" / "candidates" / LR, signing.private_key(TEST_KEY, "test")
    )
    searched = bundle.metadata["search"]
    assert searched["trials"] == len(searched["history"]) == 8 and searched["seconds"] > 0
    assert set(searched["best"]) == {"number", "score", "params"}
    assert bundle.metadata["params"] == {"C": 1.0, "max_iter": 2000, **searched["best"]["params"]}
    assert bundle.model.get_params()["C"] == searched["best"]["params"]["C"]
    assert (
        "search"
        not in load_bundle(
            pipeline_project / "models" / "candidates" / "random_forest",
            signing.private_key(TEST_KEY, "test"),
        ).metadata
    )


def test_each_trial_is_an_mlflow_run_nested_under_its_candidates_run(pipeline_project):
    client = MlflowClient(f"sqlite:///{pipeline_project / '.mlflow' / 'mlflow.db'}")
    evaluation = json.loads((pipeline_project / "reports" / "evaluation.json").read_text())
    parent = evaluation["candidates"][LR]["mlflow_run_id"]
    experiment = client.get_run(parent).info.experiment_id
    trials = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(trials) == 8  # the budget
    assert sorted(int(r.data.tags["sail.trial"]) for r in trials) == list(range(8))
    assert all("model.C" in r.data.params for r in trials)
    assert all(
        "cv_roc_auc" in r.data.metrics for r in trials if r.data.tags["sail.trial_state"] != "FAIL"
    )
    assert client.get_run(parent).data.params["search.trials"] == "8"


@pytest.mark.slow
def test_the_report_shows_best_params_and_score_against_trials(project_copy):
    ok(sail(project_copy, "report"))
    report = (project_copy / "reports" / "report.md").read_text()
    section = report.split("### Hyperparameter search", 1)[1].split("### Data", 1)[0]
    assert f"**{LR}**: best cv roc_auc" in section and "C=" in section
    assert sum(line.startswith("| ") and line[2].isdigit() for line in section.splitlines()) == 8


@pytest.mark.parametrize(
    "space,message",
    [
        (
            {"strength": {"type": "float", "low": 0.1, "high": 1}},
            "names strength, which LogisticRegression does not take",
        ),
        ({"C": {"type": "float", "low": 10, "high": 1}}, "has low 10 > high 1"),
        (
            {"C": {"type": "gaussian", "low": 0, "high": 1}},
            "type = 'gaussian' is not allowed; use 'int', 'float' or 'choice'",
        ),
        (None, "trials = 0 is below 1; set a whole number of at least 1"),
    ],
    ids=["lacking-parameter", "low-above-high", "unknown-distribution", "zero-budget"],
)
def test_bad_search_input_is_one_line_and_nothing_is_trained(project_copy, space, message):
    raw = yaml.safe_load((project_copy / "params.yaml").read_text())
    block = next(c for c in raw["candidates"] if c["name"] == LR)["search"]
    if space is None:
        block["trials"] = 0
    else:
        block["space"] = space
    (project_copy / "params.yaml").write_text(yaml.safe_dump(raw))
    candidates = project_copy / "models" / "candidates"
    before = {p: p.stat().st_mtime_ns for p in candidates.rglob("*")}
    result = sail(project_copy, "train")
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in candidates.rglob("*")} == before  # nothing (re)trained


@pytest.mark.slow
def test_training_one_candidate_with_its_search_never_opens_the_test_split(project_copy):
    """An audit hook lists every file the real `sail train --candidate` opens."""
    script = textwrap.dedent(f"""
        import json, os, sys
        opened = set()
        def hook(event, args):
            if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
                opened.add(os.path.realpath(os.fsdecode(args[0])))
        sys.addaudithook(hook)
        from sail_pipelines.cli import main
        code = main(["--project", {str(project_copy)!r}, "train", "--candidate", {LR!r}])
        data = {str((project_copy / "data").resolve())!r}
        print("OPENED", json.dumps(sorted(p for p in opened if p.startswith(data))))
        sys.exit(code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SAIL_SIGNING_KEY": TEST_KEY},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    opened = json.loads(result.stdout.split("OPENED ", 1)[1])
    split = project_copy.resolve() / "data" / "split"
    assert str(split / "train.csv") in opened and str(split / "test.csv") not in opened
    assert all(p.endswith(("train.csv", "data/raw/data.csv")) for p in opened)  # raw: its md5 only
    assert json.loads(result.stdout.splitlines()[-2])["bundles"] == [f"models/candidates/{LR}"]


def test_dvc_does_not_rerun_the_search_until_its_inputs_change(project_copy):
    def dvc(*args):
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=project_copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    bundle = project_copy / "models" / "candidates" / LR / "metadata.json"
    before = bundle.read_bytes()
    assert "Stage 'train' didn't change, skipping" in dvc("repro", "train")
    assert bundle.read_bytes() == before
    raw = yaml.safe_load((project_copy / "params.yaml").read_text())
    next(c for c in raw["candidates"] if c["name"] == LR)["search"]["trials"] = 6
    (project_copy / "params.yaml").write_text(yaml.safe_dump(raw))
    assert json.loads(dvc("status", "--json"))["train"] == [
        {"changed deps": {"params.yaml": {"candidates": "modified"}}}
    ]


def test_the_training_image_requirements_include_optuna():
    from sail_pipelines.clients.build import TRAIN_EXTRAS, pinned

    versions = pinned(TRAIN_EXTRAS)
    assert {"optuna", "sqlalchemy"} <= set(versions) and np.__version__ == versions["numpy"]
