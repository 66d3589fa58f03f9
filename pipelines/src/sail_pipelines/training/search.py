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

import contextlib
import hashlib
import json
import math
import os
import secrets
import socket
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from sail_pipelines.config import HIGHER_IS_BETTER, Dimension, SearchConfig, redact
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import metrics
from sail_pipelines.polling import retry, wait_until

Direction = Literal["minimize", "maximize"]  # an Optuna study's
QUEUED = "sail.queued"  # study attribute: the trial queue is complete
QUEUE_WAIT_SECONDS = 60  # how long a joining worker waits for the creator to queue the trials
HEARTBEAT_SECONDS = 5  # a shared trial's worker marks it alive this often ...
GRACE_SECONDS = 30  # ... and a trial not marked for this long is failed: its worker died


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
        if problem.task == "classification":
            probabilities = model.predict_proba(check) if hasattr(model, "predict_proba") else None
            classes = list(model.classes_)
            result = metrics.classification(truth, model.predict(check), probabilities, classes)
        else:
            result = metrics.regression(truth, model.predict(check))
        scores.append(result[metric])
        if trial is not None:
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return float(np.mean(scores))


def study_name(name: str, search: SearchConfig, fixed: dict[str, Any], inputs: str) -> str:
    """Workers share a study only when the space, budget, fixed params and inputs all agree."""
    spec = json.dumps([asdict(search), fixed, inputs], sort_keys=True, default=str)
    return f"sail-{name}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def open_storage(url: str | None) -> Any:
    """Memory, or a shared RDB. SQLite transactions begin IMMEDIATE: without that, two workers
    can both read a queued trial as waiting and both claim it (SQLite ignores FOR UPDATE).
    Its write-ahead log halves the time each queued or claimed trial costs."""
    import optuna
    import sqlalchemy

    if url is None:
        return optuna.storages.InMemoryStorage()
    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else {}

    def connect() -> Any:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
            )
        if sqlite:
            with storage.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return storage

    # Workers starting together race to create the tables: the database is locked, or the other
    # worker wrote the schema version first. Anything else is no race and fails at once.
    racing = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError)
    try:
        storage = retry(connect, 5, lambda attempt: 0.2 * attempt, racing)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        # The cause is left out: a driver's message may quote the URL with its password.
        reason = redact(str(exc).strip().splitlines()[0][:200])
        raise SailError(f"cannot open the search storage {redact(url)}: {reason}") from None
    if sqlite:
        sqlalchemy.event.listen(
            storage.engine,
            "begin",
            lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"),
        )
    return storage


def _sampler(search: SearchConfig, number: int) -> Any:
    """TPE seeded from the search seed and the trial number: one worker alone repeats itself,
    and workers sharing a study do not propose the same values in lockstep."""
    import optuna

    seed = int(np.random.SeedSequence([search.seed, number]).generate_state(1)[0])
    startup = min(10, max(1, (search.trials or 20) // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def _suggest(trial: Any, d: Dimension) -> Any:
    if d.kind == "choice":
        return trial.suggest_categorical(d.name, list(d.choices))
    assert d.low is not None and d.high is not None  # parse_params sets both for a range
    if d.kind == "int":
        return trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
    return trial.suggest_float(d.name, d.low, d.high, log=d.log)


def _inside(d: Dimension, value: Any) -> bool:
    if d.kind == "choice":
        return value in d.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    assert d.low is not None and d.high is not None  # parse_params sets both for a range
    return d.low <= value <= d.high and (d.kind == "float" or float(value).is_integer())


def _join(
    name: str, search: SearchConfig, storage: Any, baseline: dict[str, Any], direction: Direction
) -> Any:
    """Create the study and queue its budget, or join the one another worker created. The first
    trial is the baseline: the values the fixed params (or the estimator's defaults) give."""
    import optuna

    startup = min(5, max(1, (search.trials or 10) // 2))  # trials finished before any is pruned
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup)
    study_args = {
        "study_name": name,
        "storage": storage,
        "pruner": pruner,
        "sampler": _sampler(search, 0),
    }
    try:
        study = optuna.create_study(direction=direction, **study_args)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**study_args)
        wait_until(
            lambda: QUEUED in study.user_attrs,
            QUEUE_WAIT_SECONDS,
            0.2,
            lambda: SailError(
                f"the shared search study {name} never got its trial queue: its "
                "creator stopped early; delete the study from the storage, rerun"
            ),
        )
        return study
    first = {d.name: baseline[d.name] for d in search.space if _inside(d, baseline.get(d.name))}
    for number in range(search.trials or 0):
        study.enqueue_trial(first if number == 0 else {})
    study.set_user_attr(QUEUED, search.trials or 0)
    return study


def _claim(study: Any, storage: Any, search: SearchConfig) -> tuple[Any, int] | None:
    """The next trial this worker runs and its id, or None when the budget is spent. A queued
    trial is claimed by moving it from WAITING to RUNNING, which succeeds for one worker only.
    Its heartbeat is written first, so a worker killed right after a claim still goes stale."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    if not search.trials:  # a time budget alone: no queue, a new trial each time
        study.sampler = _sampler(search, len(study.get_trials(deepcopy=False)))
        with warnings.catch_warnings():  # Optuna's note that heartbeats suit optimize(): we beat
            warnings.simplefilter("ignore")
            trial = study.ask()
        return trial, storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.record_heartbeat(trial_id)
        try:
            claimed = storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if claimed:
            study.sampler = _sampler(search, waiting.number)
            return optuna.trial.Trial(study, trial_id), trial_id
    return None


@contextlib.contextmanager
def _heartbeat(storage: Any, trial_id: int) -> Any:
    """Mark a shared trial alive while it runs, so that if this worker dies the others see it
    go stale, fail it and finish, instead of waiting for it forever."""
    import optuna
    import sqlalchemy

    if not isinstance(storage, optuna.storages.RDBStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):  # the next may get through
                storage.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _settle(study: Any) -> None:
    """Wait for the trials other workers still run, so every worker records the same study."""
    import optuna
    from optuna.trial import TrialState

    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(0.5)


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
    study = _join(study_name(name, search, fixed, inputs), search, storage, baseline, direction)
    # Who runs these trials: containers on one host share its name and all are pid 1.
    worker = f"{socket.gethostname()}:{os.getpid()}-{secrets.token_hex(3)}"
    started = time.monotonic()
    # Many small fits: one BLAS/OpenMP thread each beats threads contending for the cores (the
    # training image runs single-threaded anyway); this halved the example's search time here.
    with threadpool_limits(limits=1):
        while search.timeout is None or time.monotonic() - started < search.timeout:
            claimed = _claim(study, storage, search)
            if claimed is None:
                break
            with _heartbeat(storage, claimed[1]):
                _run_trial(study, claimed[0], search, fixed, problem, cuts, worker)
    seconds = time.monotonic() - started
    _settle(study)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
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
