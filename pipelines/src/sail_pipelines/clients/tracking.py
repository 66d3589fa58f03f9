"""MLflow tracking and Model Registry access, failing closed.

Any error talking to MLflow becomes one SailError, so the gate and promotion stop rather
than act on a registry they could not read. Aliases, not the deprecated stages, mark the
`champion` (serving now) and the `candidate` (passed the gate, awaiting promotion).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from sail_pipelines.clients import aws
from sail_pipelines.config import Settings, redact
from sail_pipelines.errors import SailError

CHAMPION = "champion"
CANDIDATE = "candidate"
AUDIT_TAG_PREFIX = "sail.audit."  # a tag per champion change: sail.audit.000001, ...


@contextlib.contextmanager
def reachable(settings: Settings, doing: str) -> Iterator[None]:
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.exceptions.RequestException, OSError) as exc:
        reason = (
            redact(str(exc).strip().splitlines()[0][:300])
            if str(exc).strip()
            else type(exc).__name__
        )
        # The cause is left out: its message may quote the tracking URI with its password.
        raise SailError(
            f"MLflow at {redact(settings.tracking_uri)} failed while {doing}: {reason}"
        ) from None


def client(settings: Settings) -> Any:
    """An MlflowClient for the configured store, with short retries so an outage fails fast.

    In team mode the MLflow client may write artifacts to S3 itself (a server started with
    --no-serve-artifacts): it gets the team AWS identity and S3 endpoint through the environment.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar in CI logs
    if settings.aws.configured:
        aws.apply(settings.aws)
    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep step output to the verdicts
    if settings.artifact_location:
        relocate(settings.tracking_uri, settings.artifact_location)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return MlflowClient(settings.tracking_uri)


def relocate(tracking_uri: str, artifact_location: str) -> None:
    """Point an embedded store copied or moved with its project (`cp -a`) at this project's
    artifacts.

    The SQLite store records absolute artifact paths; left alone, a copy would keep writing into the
    original project's .mlflow/artifacts. Every recorded path under another project's artifact
    folder
    is rewritten to this one's, in one transaction, the first time the copy uses its store.
    """
    import sqlite3

    database = Path(tracking_uri.removeprefix("sqlite:///"))
    if not tracking_uri.startswith("sqlite:///") or not database.is_file():
        return
    here = urlsplit(artifact_location).path
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        try:
            rows = db.execute("SELECT artifact_location FROM experiments").fetchall()
        except sqlite3.DatabaseError:
            return  # not an MLflow store (yet): MLflow itself will say what is wrong
        stored = {
            urlsplit(loc).path.split(ARTIFACTS)[0] + ARTIFACTS
            for (loc,) in rows
            if loc and ARTIFACTS in loc
        }
        for old in stored - {here}:
            for table, column in _text_columns(db):
                for prefix, new in ((f"file://{old}", f"file://{here}"), (old, here)):
                    db.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                        f'WHERE substr("{column}", 1, ?) = ?',
                        (new, len(prefix) + 1, len(prefix), prefix),
                    )


ARTIFACTS = "/.mlflow/artifacts"


def _text_columns(db: Any) -> list[tuple[str, str]]:
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [
        (table, column[1])
        for table in tables
        for column in db.execute(f'PRAGMA table_info("{table}")')
        if "CHAR" in column[2].upper() or "TEXT" in column[2].upper()
    ]


def experiment_id(mlflow_client: Any, settings: Settings, name: str) -> str:
    """The experiment's id, created on first use.

    Jobs running side by side (candidates, evaluation, search) may all find it missing; the
    one that loses the race to create it reads the winner's instead of failing.
    """
    from mlflow.exceptions import MlflowException

    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=settings.artifact_location)
    except MlflowException as exc:
        experiment = mlflow_client.get_experiment_by_name(name)
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
            raise
        return experiment.experiment_id


def version_by_alias(mlflow_client: Any, model: str, alias: str) -> Any | None:
    """The version holding an alias, or None when the model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        registered = mlflow_client.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = registered.aliases.get(alias)
    return None if version is None else mlflow_client.get_model_version(model, version)


def audit_tags(mlflow_client: Any, model: str) -> list[tuple[str, str]]:
    """The audit records a registered model carries, as (tag, JSON text), oldest first: one
    reader for delivery/audit.py, which verifies them, and the gate's chart, which only reads."""
    tags = mlflow_client.get_registered_model(model).tags
    return sorted((k, v) for k, v in tags.items() if k.startswith(AUDIT_TAG_PREFIX))


def register(mlflow_client: Any, model: str, run_id: str, source: str, tags: dict[str, str]) -> Any:
    """Register the run's bundle as a model version; a second call for the same run reuses it."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        mlflow_client.create_registered_model(model, description="Managed by sail-pipelines")
    existing = mlflow_client.search_model_versions(f"name='{model}' and run_id='{run_id}'")
    if existing:
        return existing[0]
    return mlflow_client.create_model_version(model, source=source, run_id=run_id, tags=tags)


def log_trials(
    mlflow_client: Any, experiment: str, parent_run_id: str, candidate: str, search: dict[str, Any]
) -> list[str]:
    """One run per search trial, nested under its candidate's run (MLflow's parentRunId tag).
    The trials come from the signed bundle: the training container that ran them has no MLflow."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    metric = f"cv_{search['metric']}"
    summary = {
        "search.trials": search["trials"],
        "search.seconds": search["seconds"],
        "search.best_trial": search["best"]["number"],
    }
    best = Metric(metric, search["best"]["score"], now, 0)
    mlflow_client.log_batch(
        parent_run_id, metrics=[best], params=[Param(k, str(v)) for k, v in summary.items()]
    )
    run_ids = []
    for trial in search["history"]:
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "sail.trial_of": candidate,
            "sail.trial": str(trial["number"]),
            "sail.trial_state": trial["state"],
        }
        name = f"{candidate}-trial-{trial['number']}"
        run_id = mlflow_client.create_run(experiment, run_name=name, tags=tags).info.run_id
        scores = [] if trial["score"] is None else [Metric(metric, trial["score"], now, 0)]
        params = [Param(f"model.{k}", str(v)[:6000]) for k, v in trial["params"].items()]
        mlflow_client.log_batch(run_id, metrics=scores, params=params)
        mlflow_client.set_terminated(run_id, "FAILED" if trial["state"] == "FAIL" else "FINISHED")
        run_ids.append(run_id)
    return run_ids
