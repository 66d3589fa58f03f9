"""`sail evaluate`: the test/metric step, kept apart from training.

It only sees bundles through their signatures, scores every candidate on the held-out
test set, picks the best (the SAIL "discriminator"), and records each candidate as an
MLflow run tagged with the commit and data hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sail_pipelines import model_metrics as metrics
from sail_pipelines.clients import containers, tracking
from sail_pipelines.config import CompiledConfig, Params, ProjectPaths, Settings
from sail_pipelines.contract import stl
from sail_pipelines.contract.data import json_records, read_csv
from sail_pipelines.contract.schema import plain
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import charts, importance, plots
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.files import read_json, write_json
from sail_pipelines.inference import model, onnx
from sail_pipelines.inference.requests import checked_columns
from sail_pipelines.integrity.bundle import TRANSFORMER, LoadedBundle, load_bundle, recover
from sail_pipelines.integrity.signing import VerifyKey, serving_env
from sail_pipelines.provenance import file_md5

HOLDOUT_ROWS = 20  # rows whose predictions the smoke tests check (the gate adds labelled ones)


def predict(bundle: LoadedBundle, rows: pd.DataFrame, runtime: str | None = None) -> Outputs:
    """What the bundle says about each row (by the runtime that will serve it): predictions, and
    probabilities in its class order."""
    try:
        predictions, probabilities = model.predict(
            bundle, rows[bundle.schema.feature_names], runtime
        )
    except stl.NonFiniteFeatures as exc:
        lines = ", ".join(str(rows.index[i]) for i in exc.rows[:5])
        raise SailError(
            f"test data: {exc.field or 'a column'} becomes non-finite in the transformation layer "
            f"({rows.index.name or 'row'} {lines})"
        ) from exc
    return Outputs(np.asarray(predictions), probabilities, tuple(bundle.classes))


def score(
    bundle: LoadedBundle,
    test: pd.DataFrame,
    plot_dir: Path | None = None,
    runtime: str | None = None,
) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """Metrics of one bundle on the test frame, by the runtime that will serve it (plots too
    when plot_dir is given), its predictions, and the points the report charts."""
    target = bundle.metadata["target"]
    outputs = predict(bundle, test, runtime)
    predictions, probabilities = outputs.predictions, outputs.probabilities
    y_true = test[target]
    if bundle.metadata["task"] == "classification":
        result = metrics.classification(y_true, predictions, probabilities, bundle.classes)
        if plot_dir:
            plots.classification(
                plot_dir,
                bundle.metadata["name"],
                y_true,
                predictions,
                probabilities,
                bundle.classes,
            )
    else:
        result = metrics.regression(y_true, predictions)
        if plot_dir:
            plots.regression(plot_dir, bundle.metadata["name"], y_true, predictions)
    drawn = charts.data(bundle.metadata["task"], y_true, predictions, probabilities, bundle.classes)
    return result, [plain(p) for p in predictions], drawn


def serving_runtime(
    bundle: LoadedBundle, test: pd.DataFrame, config: CompiledConfig
) -> dict[str, Any]:
    """Which runtime will serve this candidate: its compiled graph only if it agrees with
    scikit-learn on the test split and on the holdout rows, the latter built as a request's are."""
    if bundle.runtime != "onnx":
        recorded = bundle.metadata.get("inference")
        return dict(recorded or {"runtime": "sklearn", "reason": "no compiled model"})
    classification = bundle.metadata["task"] == "classification"
    schema = bundle.schema
    records = json_records(test.head(HOLDOUT_ROWS)[schema.feature_names])  # as a client sends them
    holdout = checked_columns(schema, records, len(records))
    checks: dict[str, Any] = {}
    for name, rows in (("test_split", test), ("holdout", holdout)):
        where = name.replace("_", " ")
        try:
            served = model.predict(bundle, rows, "onnx")
        except Exception as exc:  # noqa: BLE001 - any failure of the graph: scikit-learn serves
            failure = f"{type(exc).__name__}: {str(exc)[:200]}"
            reason = f"the compiled model failed on the {where}: {failure}"
            return {"runtime": "sklearn", "reason": reason}
        expected = model.predict(bundle, rows, "sklearn")
        problem, checks[name] = onnx.agreement(expected, served, config, classification)
        if problem:
            reason = f"the compiled model disagrees with scikit-learn on the {where}: {problem}"
            return {"runtime": "sklearn", "reason": reason, "agreement": checks}
    return {"runtime": "onnx", "reason": None, "agreement": checks}


def candidate_dirs(paths: ProjectPaths, params: Params) -> list[Path]:
    dirs = [paths.candidates_dir / c.name for c in params.candidates]
    for d in dirs:
        recover(d)  # a training killed while replacing a bundle left the previous one parked
    missing = [d.name for d in dirs if not d.is_dir()]
    if missing:
        raise SailError(
            f"no trained bundle for candidate(s) {', '.join(missing)}: run `sail train` first"
        )
    return dirs


def same_transformation_layer(bundles: dict[str, LoadedBundle]) -> None:
    """Candidates trained in separate containers each fit the STL on the same training split.
    Fitting is deterministic, so their transformers must be byte-identical: one layer for all."""
    digests = {
        name: hashlib.sha256(b.files[TRANSFORMER]).hexdigest()[:12] for name, b in bundles.items()
    }
    if len(set(digests.values())) > 1:
        listed = ", ".join(f"{name}={digest}" for name, digest in digests.items())
        raise SailError(
            f"the candidates carry different transformation layers ({listed}): train them all "
            "from the same split"
        )


def _log_run(
    client: Any,
    experiment: str,
    bundle: LoadedBundle,
    result: dict[str, Any],
    plot_dir: Path,
    params: Params,
    runtime: str,
    test: pd.DataFrame,
    paths: ProjectPaths,
) -> str:
    meta = bundle.metadata
    run = client.create_run(
        experiment,
        run_name=f"{meta['name']}-{meta['git_commit'][:8]}",
        tags={
            "sail.candidate": meta["name"],
            "sail.bundle_id": bundle.bundle_id,
            "sail.data_hash": meta["data_hash"],
            "mlflow.source.git.commit": meta["git_commit"],
            "git_commit": meta["git_commit"],
            "data_hash": meta["data_hash"],
            "sail.runtime": runtime,
        },
    )
    run_id = run.info.run_id
    logged = {
        "estimator": meta["estimator"],
        "split.test_size": params.split.test_size,
        "split.seed": params.split.seed,
    }
    logged.update({f"model.{k}": v for k, v in meta["params"].items()})
    for name, value in logged.items():
        client.log_param(run_id, name, str(value)[:6000])
    for name, value in result.items():
        if isinstance(value, float):
            client.log_metric(run_id, name, value)
    client.log_artifacts(run_id, str(plot_dir), "plots")
    client.log_artifacts(run_id, str(bundle.path), "bundle")
    _log_datasets(run_id, meta, test, paths)
    if "search" in meta:
        tracking.log_trials(client, experiment, run_id, meta["name"], meta["search"])
    client.set_terminated(run_id)
    return run_id


def _log_datasets(
    run_id: str, meta: dict[str, Any], test: pd.DataFrame, paths: ProjectPaths
) -> None:
    """The run's data lineage in MLflow's own terms: the training split by its md5 (this step
    never reads it) and the test split it scored."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():  # MLflow warns that it guessed the source type of a path
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(paths.train_csv))
    # MLflow marks Dataset.profile abstract, but Dataset is no ABC and MetaDataset is concrete
    train = MetaDataset(source, name="train", digest=meta["train_hash"])  # type: ignore[abstract]
    scored = from_pandas(test, source=str(paths.test_csv), targets=meta["target"], name="test")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(train, context="training", tags={"sail.data_hash": meta["data_hash"]})
        mlflow.log_input(scored, context="evaluation")


def run(paths: ProjectPaths, params: Params, settings: Settings, key: VerifyKey) -> dict[str, Any]:
    test = read_csv(paths.test_csv)
    bundles = {
        b.metadata["name"]: b for b in (load_bundle(d, key) for d in candidate_dirs(paths, params))
    }
    same_transformation_layer(bundles)
    client = tracking.client(settings)
    scored: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Any]] = {}
    run_ids: dict[str, str] = {}
    runtimes: dict[str, dict[str, Any]] = {}
    drawn: dict[str, dict[str, Any]] = {}
    with tracking.reachable(settings, "logging the evaluation"):
        experiment = tracking.experiment_id(client, settings, params.gate.registered_model)
    with tempfile.TemporaryDirectory() as scratch:
        for name, bundle in bundles.items():
            plot_dir = Path(scratch) / name
            runtimes[name] = serving_runtime(bundle, test, params.compiled)
            runtime = runtimes[name]["runtime"]
            scored[name], predictions[name], drawn[name] = score(bundle, test, plot_dir, runtime)
            with tracking.reachable(settings, "logging the evaluation"):
                run_ids[name] = _log_run(
                    client, experiment, bundle, scored[name], plot_dir, params, runtime, test, paths
                )
        winner = metrics.best(scored, params.gate.primary_metric)
        shutil.rmtree(paths.plots, ignore_errors=True)
        shutil.copytree(Path(scratch) / winner, paths.plots)
    found, picture = importance.measured(
        paths.plots, params, bundles[winner], test, runtimes[winner]
    )
    with tracking.reachable(settings, "logging the evaluation"):  # beside the winner's run
        client.log_artifact(run_ids[winner], str(picture), "plots")
        client.log_dict(run_ids[winner], found, "importance.json")
    evaluation = {
        "primary_metric": params.gate.primary_metric,
        "best": winner,
        "test_rows": int(len(test)),
        "test_hash": file_md5(paths.test_csv),  # the gate scores these very rows again
        "candidates": {
            name: {
                "metrics": scored[name],
                "bundle_id": bundle.bundle_id,
                "bundle": str(bundle.path.relative_to(paths.root)),
                "mlflow_run_id": run_ids[name],
                "inference": runtimes[name],
                "charts": drawn[name],
                **({"search": bundle.metadata["search"]} if "search" in bundle.metadata else {}),
            }
            for name, bundle in bundles.items()
        },
        "importance": found,  # the winner's, per source column (evaluation/importance.py)
        "holdout": _holdout(bundles[winner], test, predictions[winner]),
    }
    write_json(paths.evaluation_report, evaluation)
    write_json(
        paths.metrics,
        {"candidate": winner, **{k: v for k, v in scored[winner].items() if isinstance(v, float)}},
    )
    return evaluation


def _holdout(bundle: LoadedBundle, test: pd.DataFrame, predictions: list[Any]) -> dict[str, Any]:
    """The first test rows as a client sends them (missing values as null), with the winner's
    predictions: what the smoke tests check."""
    schema = bundle.schema
    sent = [*schema.feature_names, *(c.name for c in schema.ignored if c.name in test.columns)]
    holdout = test.head(HOLDOUT_ROWS)
    return {"records": json_records(holdout[sent]), "predictions": predictions[: len(holdout)]}


def in_container(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    key: VerifyKey,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The same step in the test/metric image: it sees the test split and the candidates, read-only,
    writes only reports/ (and the embedded MLflow store), and gets the verify key, no private
    key."""
    from sail_pipelines.clients.build import recorded

    candidate_dirs(paths, params)
    image = recorded(paths)["metric"]
    mounts = containers.metric_mounts(paths, settings)
    extra = {**containers.team_env(settings), **serving_env(key)}
    env = containers.step_env(os.environ, extra, private=False)
    client = containers.docker_client()
    containers.run_steps(client, image, {"evaluate": ["evaluate"]}, mounts, env, paths, say)
    return read_json(paths.evaluation_report)
