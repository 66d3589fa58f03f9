"""Hyperparameter search for one candidate, inside its training step (and so its container).

Optuna's TPE sampler proposes values from the candidate's `search:` space. Each trial is
scored by k-fold cross-validation on the training split only, with a fresh copy of the
Shared Transformation Layer fitted inside every fold, on the metric the evaluate step uses.
The median pruner stops a trial whose running CV score lags the others. The first trial
tries what the fixed params give (the estimator's defaults where they are silent), so the
winner is never worse on CV than the fixed values. train.py refits the winner on the whole
training split and signs every trial into the bundle; the evaluate step logs them as MLflow
runs nested under the candidate's run, since a training container has no MLflow.

By default the study lives in memory and the trials run one after another. With
SAIL_SEARCH_STORAGE set to an Optuna RDB URL (SQLite on one machine, any SQL server across
machines), every worker started on the same inputs joins one study. The worker that
creates it queues exactly `trials` trials, and each worker claims them one at a time, so
together the workers run the budget once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from sail_pipelines import model_metrics as metrics
from sail_pipelines.config import HIGHER_IS_BETTER, Dimension, SearchConfig, redact
from sail_pipelines.errors import SailError
from sail_pipelines.training import study as studies
from sail_pipelines.training.study import Direction, open_storage

__all__ = ["Outcome", "Problem", "check_space", "cv_score", "open_storage", "run", "study_name"]


@dataclass(frozen=True)
class Problem:
    """What each trial fits: the raw training features, an unfitted STL, an estimator factory."""

    features: pd.DataFrame
    target: pd.Series
    task: str
    make_stl: Callable[[], Any]
    make_estimator: Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Outcome:
    params: dict[str, Any]  # the fixed params with the winning values in place
    summary: dict[str, Any]  # for the bundle's metadata: budget, best, time and every trial


def check_space(name: str, search: SearchConfig, estimator: Any) -> None:
    """Refuse a space naming a parameter the estimator does not take, before anything is fitted."""
    lacking = [d.name for d in search.space if d.name not in estimator.get_params()]
    if lacking:
        raise SailError(
            f"candidate '{name}': the search space names {', '.join(lacking)}, "
            f"which {type(estimator).__name__} does not take"
        )


def folds(name: str, search: SearchConfig, task: str, target: pd.Series) -> list[tuple[Any, Any]]:
    """Seeded folds of the training rows, stratified for classification."""
    splitter = StratifiedKFold if task == "classification" else KFold
    try:
        cuts = splitter(search.folds, shuffle=True, random_state=search.seed).split(target, target)
        return list(cuts)
    except ValueError as exc:
        raise SailError(
            f"candidate '{name}': cannot cut the training split into {search.folds} "
            f"folds: {str(exc).splitlines()[0]}"
        ) from exc


def cv_score(
    params: dict[str, Any],
    problem: Problem,
    metric: str,
    cuts: list[tuple[Any, Any]],
    trial: Any = None,
) -> float:
    """Mean score over the folds. With a trial, each running mean is reported, for pruning."""
    import optuna

    scores = []
    for step, (fit_rows, check_rows) in enumerate(cuts):
        model = Pipeline([("stl", problem.make_stl()), ("model", problem.make_estimator(params))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(problem.features.iloc[fit_rows], problem.target.iloc[fit_rows])
        check, truth = problem.features.iloc[check_rows], problem.target.iloc[check_rows]
        probabilities, classes = None, None
        if problem.task == "classification":
            probabilities = model.predict_proba(check) if hasattr(model, "predict_proba") else None
            classes = list(model.classes_)
        scores.append(metrics.score(metric, truth, model.predict(check), probabilities, classes))
        if trial is not None:
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return float(np.mean(scores))


def study_name(name: str, search: SearchConfig, fixed: dict[str, Any], inputs: str) -> str:
    """Workers share a study only when the space, budget, fixed params and inputs all agree."""
    spec = json.dumps([search.model_dump(), fixed, inputs], sort_keys=True, default=str)
    return f"sail-{name}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def _suggest(trial: Any, d: Dimension) -> Any:
    if d.kind == "choice":
        return trial.suggest_categorical(d.name, list(d.choices))
    assert d.low is not None and d.high is not None  # parse_params sets both for a range
    if d.kind == "int":
        return trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
    return trial.suggest_float(d.name, d.low, d.high, log=d.log)


def _run_trial(
    study: Any,
    trial: Any,
    search: SearchConfig,
    fixed: dict[str, Any],
    problem: Problem,
    cuts: list[tuple[Any, Any]],
    worker: str,
) -> None:
    import optuna
    from optuna.trial import TrialState

    trial.set_user_attr("worker", worker)
    try:
        params = {**fixed, **{d.name: _suggest(trial, d) for d in search.space}}
        score = cv_score(params, problem, search.metric, cuts, trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return
    except (ValueError, TypeError, ArithmeticError) as exc:  # values the estimator refuses
        trial.set_user_attr("error", (str(exc).strip() or type(exc).__name__).splitlines()[0][:300])
        study.tell(trial, state=TrialState.FAIL)
        return
    if math.isnan(score):
        trial.set_user_attr("error", f"{search.metric} is not defined for this model (nan)")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, score)


def _record(trial: Any) -> dict[str, Any]:
    """One trial as the bundle keeps it (a pruned trial's score is its last running mean)."""
    from optuna.trial import TrialState

    ended, began = trial.datetime_complete, trial.datetime_start
    entry = {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "score": trial.value if trial.value is not None and math.isfinite(trial.value) else None,
        "seconds": round((ended - began).total_seconds(), 3) if ended and began else None,
        "worker": trial.user_attrs.get("worker"),
    }
    if trial.state == TrialState.FAIL:
        entry["error"] = trial.user_attrs.get("error", "its worker stopped (no heartbeat)")
    return entry


def _tell_shared(name: str, study: str, trials: list[Any], ran: bool) -> None:
    """One line each on stderr for what a shared study did without this worker: trials a
    stopped worker left running (failed, not rerun), and a budget another run already spent."""
    from optuna.trial import TrialState

    stale = [t.number for t in trials if t.state == TrialState.FAIL and "error" not in t.user_attrs]
    if stale:
        numbers = ", ".join(map(str, stale))
        _say(
            f"search for '{name}': study {study}: trial(s) {numbers} were left running by a "
            "worker that stopped (no heartbeat); counted as failed, not rerun"
        )
    if not ran:
        _say(
            f"search for '{name}': study {study} had no trial left to run, its {len(trials)} "
            "trials ran in other runs; refitting its best"
        )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(
    name: str,
    search: SearchConfig,
    fixed: dict[str, Any],
    problem: Problem,
    inputs: str,
    storage_url: str | None = None,
) -> Outcome:
    """Search, then return the winning params and the summary the bundle carries."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cuts = folds(name, search, problem.task, problem.target)
    direction: Direction = "maximize" if HIGHER_IS_BETTER[search.metric] else "minimize"
    storage = open_storage(storage_url)
    baseline = problem.make_estimator(fixed).get_params()
    name_of_study = study_name(name, search, fixed, inputs)
    study = studies.join(name_of_study, search, storage, baseline, direction)
    # Who runs these trials: containers on one host share its name and all are pid 1.
    worker = f"{socket.gethostname()}:{os.getpid()}-{secrets.token_hex(3)}"
    started = time.monotonic()
    ran = 0
    # Many small fits: one BLAS/OpenMP thread each beats threads contending for the cores (the
    # training image runs single-threaded anyway); this halved the example's search time here.
    with threadpool_limits(limits=1):
        while search.timeout is None or time.monotonic() - started < search.timeout:
            claimed = studies.claim(study, storage, search)
            if claimed is None:
                break
            with studies.heartbeat(storage, claimed[1]):
                _run_trial(study, claimed[0], search, fixed, problem, cuts, worker)
            ran += 1
    seconds = time.monotonic() - started
    studies.settle(study)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    if storage_url is not None:
        _tell_shared(name, study.study_name, trials, ran > 0 or not search.trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        raise SailError(
            f"candidate '{name}': no search trial finished"
            + (f" (first error: {errors[0]})" if errors else "")
        )
    best = study.best_trial
    summary = {
        "metric": search.metric,
        "direction": direction,
        "folds": search.folds,
        "seed": search.seed,
        "budget": {"trials": search.trials, "timeout": search.timeout},
        "study": study.study_name,
        "storage": "memory" if storage_url is None else redact(storage_url),
        "trials": len(trials),
        "seconds": round(seconds, 3),
        "best": {"number": best.number, "score": best.value, "params": best.params},
        "history": [_record(t) for t in trials],
    }
    return Outcome({**fixed, **best.params}, summary)
