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
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from sail_pipelines.config import Params, ProjectPaths, Settings
from sail_pipelines.contract.data import read_csv
from sail_pipelines.contract.schema import plain
from sail_pipelines.delivery import containers
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import metrics, plots
from sail_pipelines.files import read_json, write_json
from sail_pipelines.integrations import tracking
from sail_pipelines.integrity.bundle import TRANSFORMER, LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import SigningKey

HOLDOUT_ROWS = 20  # rows that travel with the accepted model for smoke tests


def score(bundle: LoadedBundle, test: pd.DataFrame, plot_dir: Path | None = None) -> tuple[dict[str, Any], list[Any]]:
    """Metrics of one bundle on the test frame (plots too when plot_dir is given)."""
    target = bundle.metadata["target"]
    features = test[[c["name"] for c in bundle.metadata["schema"]["features"]]]
    predictions, probabilities = bundle.predict(features)
    y_true = test[target]
    if bundle.metadata["task"] == "classification":
        result = metrics.classification(y_true, predictions, probabilities, bundle.classes)
        if plot_dir:
            plots.classification(plot_dir, bundle.metadata["name"], y_true, predictions, probabilities, bundle.classes)
    else:
        result = metrics.regression(y_true, predictions)
        if plot_dir:
            plots.regression(plot_dir, bundle.metadata["name"], y_true, predictions)
    return result, [plain(p) for p in predictions]


def candidate_dirs(paths: ProjectPaths, params: Params) -> list[Path]:
    dirs = [paths.candidates_dir / c.name for c in params.candidates]
    missing = [d.name for d in dirs if not d.is_dir()]
    if missing:
        raise SailError(f"no trained bundle for candidate(s) {', '.join(missing)}: run `sail train` first")
    return dirs


def same_transformation_layer(bundles: dict[str, LoadedBundle]) -> None:
    """Candidates trained in separate containers each fit the STL on the same training split.
    Fitting is deterministic, so their transformers must be byte-identical: one layer for all."""
    digests = {name: hashlib.sha256(b.files[TRANSFORMER]).hexdigest()[:12] for name, b in bundles.items()}
    if len(set(digests.values())) > 1:
        listed = ", ".join(f"{name}={digest}" for name, digest in digests.items())
        raise SailError(f"the candidates carry different transformation layers ({listed}): train them all from the same split")


def _log_run(client: Any, experiment: str, bundle: LoadedBundle, result: dict[str, Any], plot_dir: Path, params: Params) -> str:
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
        },
    )
    run_id = run.info.run_id
    logged = {"estimator": meta["estimator"], "split.test_size": params.split.test_size, "split.seed": params.split.seed}
    logged.update({f"model.{k}": v for k, v in meta["params"].items()})
    for name, value in logged.items():
        client.log_param(run_id, name, str(value)[:6000])
    for name, value in result.items():
        if isinstance(value, float):
            client.log_metric(run_id, name, value)
    client.log_artifacts(run_id, str(plot_dir), "plots")
    client.log_artifacts(run_id, str(bundle.path), "bundle")
    if "search" in meta:
        tracking.log_trials(client, experiment, run_id, meta["name"], meta["search"])
    client.set_terminated(run_id)
    return run_id


def run(paths: ProjectPaths, params: Params, settings: Settings, key: SigningKey) -> dict[str, Any]:
    test = read_csv(paths.test_csv)
    bundles = {b.metadata["name"]: b for b in (load_bundle(d, key) for d in candidate_dirs(paths, params))}
    same_transformation_layer(bundles)
    client = tracking.client(settings)
    scored: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Any]] = {}
    run_ids: dict[str, str] = {}
    with tracking.reachable(settings, "logging the evaluation"):
        experiment = tracking.experiment_id(client, settings, params.gate.registered_model)
    with tempfile.TemporaryDirectory() as scratch:
        for name, bundle in bundles.items():
            plot_dir = Path(scratch) / name
            scored[name], predictions[name] = score(bundle, test, plot_dir)
            with tracking.reachable(settings, "logging the evaluation"):
                run_ids[name] = _log_run(client, experiment, bundle, scored[name], plot_dir, params)
        winner = metrics.best(scored, params.gate.primary_metric)
        shutil.rmtree(paths.plots, ignore_errors=True)
        shutil.copytree(Path(scratch) / winner, paths.plots)
    features = [c["name"] for c in bundles[winner].metadata["schema"]["features"]]
    holdout = test.head(HOLDOUT_ROWS)
    evaluation = {
        "primary_metric": params.gate.primary_metric,
        "best": winner,
        "test_rows": int(len(test)),
        "candidates": {
            name: {
                "metrics": scored[name],
                "bundle_id": bundle.bundle_id,
                "bundle": str(bundle.path.relative_to(paths.root)),
                "mlflow_run_id": run_ids[name],
                **({"search": bundle.metadata["search"]} if "search" in bundle.metadata else {}),
            }
            for name, bundle in bundles.items()
        },
        "holdout": {
            "records": holdout[features].to_dict(orient="records"),
            "predictions": predictions[winner][: len(holdout)],
        },
    }
    write_json(paths.evaluation_report, evaluation)
    write_json(paths.metrics, {"candidate": winner, **{k: v for k, v in scored[winner].items() if isinstance(v, float)}})
    return evaluation


def in_container(paths: ProjectPaths, params: Params, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """The same step in the test/metric image: it sees the test split and the candidates, read-only,
    and writes only reports/ (and the embedded MLflow store)."""
    from sail_pipelines.delivery.build import recorded

    candidate_dirs(paths, params)
    image = recorded(paths)["metric"]
    mounts = containers.metric_mounts(paths, settings)
    containers.run_steps(containers.docker_client(), image, {"evaluate": ["evaluate"]}, mounts,
                         containers.step_env(os.environ, containers.team_env(settings)), paths, say)
    return read_json(paths.evaluation_report)
