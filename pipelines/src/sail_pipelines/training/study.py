"""The Optuna study a search runs in: in memory, or shared through an RDB by every worker
started on the same inputs. The worker that creates a shared study queues exactly `trials`
trials; each worker claims them one at a time and marks the one it runs alive, so together
the workers run the budget once and a dead worker's trial is failed, not waited for."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Any, Literal

import numpy as np

from sail_pipelines.config import Dimension, SearchConfig, redact
from sail_pipelines.errors import SailError
from sail_pipelines.polling import retry, wait_until

Direction = Literal["minimize", "maximize"]  # an Optuna study's
QUEUED = "sail.queued"  # study attribute: the trial queue is complete
QUEUE_WAIT_SECONDS = 60  # how long a joining worker waits for the creator to queue the trials
HEARTBEAT_SECONDS = 5  # a shared trial's worker marks it alive this often ...
GRACE_SECONDS = 30  # ... and a trial not marked for this long is failed: its worker died


class CreatedByAnother(Exception):
    """A table of the storage was created by another worker starting at the same moment."""


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
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                )
        except sqlalchemy.exc.ProgrammingError as exc:
            if "already exists" in str(exc):  # PostgreSQL: another worker created it first
                raise CreatedByAnother(str(exc)) from exc
            raise
        if sqlite:
            with storage.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return storage

    # Workers starting together race to create the tables: the database is locked, the other
    # worker wrote the schema version first, or created a table between our check and our
    # CREATE TABLE. Anything else is no race and fails at once.
    racing = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, CreatedByAnother)
    try:
        storage = retry(connect, 5, lambda attempt: 0.2 * attempt, racing)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, CreatedByAnother) as exc:
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


def sampler(search: SearchConfig, number: int) -> Any:
    """TPE seeded from the search seed and the trial number: one worker alone repeats itself,
    and workers sharing a study do not propose the same values in lockstep."""
    import optuna

    seed = int(np.random.SeedSequence([search.seed, number]).generate_state(1)[0])
    startup = min(10, max(1, (search.trials or 20) // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def inside(d: Dimension, value: Any) -> bool:
    if d.kind == "choice":
        return value in d.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    assert d.low is not None and d.high is not None  # parse_params sets both for a range
    return d.low <= value <= d.high and (d.kind == "float" or float(value).is_integer())


def join(
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
        "sampler": sampler(search, 0),
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
    first = {d.name: baseline[d.name] for d in search.space if inside(d, baseline.get(d.name))}
    for number in range(search.trials or 0):
        study.enqueue_trial(first if number == 0 else {})
    study.set_user_attr(QUEUED, search.trials or 0)
    return study


def claim(study: Any, storage: Any, search: SearchConfig) -> tuple[Any, int] | None:
    """The next trial this worker runs and its id, or None when the budget is spent. A queued
    trial is claimed by moving it from WAITING to RUNNING, which succeeds for one worker only.
    Its heartbeat is written first, so a worker killed right after a claim still goes stale."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    if not search.trials:  # a time budget alone: no queue, a new trial each time
        study.sampler = sampler(search, len(study.get_trials(deepcopy=False)))
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
            study.sampler = sampler(search, waiting.number)
            return optuna.trial.Trial(study, trial_id), trial_id
    return None


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int) -> Any:
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


def settle(study: Any) -> None:
    """Wait for the trials other workers still run, so every worker records the same study."""
    import optuna
    from optuna.trial import TrialState

    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(0.5)
