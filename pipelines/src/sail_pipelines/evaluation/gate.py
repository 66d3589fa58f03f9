"""`sail gate`: a model moves on only if it meets every threshold and does not regress.

The comparison is against the version holding the `champion` alias in the MLflow Model
Registry, on two yardsticks: the new test split, and the champion's own signed holdout (the
labelled test rows its accepted bundle carries, verified like the model), minus any row the
candidate trained on. New test data can be broken; the holdout cannot have changed. If the
champion scores far below its record on the new split but as recorded on its holdout, the
new data is suspect and the gate fails. Every metric has a paired bootstrap interval, and the
no-regression rule can be set to fail only when a regression is beyond doubt ("confidence")
or on the point estimate ("point"). Below a minimum of rows (or rows per class) the gate
refuses to judge. Slices of the test split are measured and may have rules of their own.

A first model, with no champion, is judged on thresholds (and slices) alone. On a pass the
winning bundle is re-signed as the accepted bundle with its metrics, registry version and
holdout, and the version gets the `candidate` alias. On a fail nothing is registered or
written but the verdict in reports/gate.json and the model card.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from sail_pipelines.clients import tracking
from sail_pipelines.config import Params, ProjectPaths, Settings, stores
from sail_pipelines.contract.data import read_csv
from sail_pipelines.errors import GateFailed, SailError
from sail_pipelines.evaluation import accept, card, slices
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.champion import HOLDOUT_CSV, read_champion, short_of_evidence
from sail_pipelines.evaluation.evaluate import predict
from sail_pipelines.evaluation.evidence import compare, point
from sail_pipelines.evaluation.rules import Rule, judge, serving_rule
from sail_pipelines.files import read_json, write_json
from sail_pipelines.inference import pyfunc
from sail_pipelines.integrity.bundle import (
    HOLDOUT,
    METADATA,
    ONNX_MODEL,
    LoadedBundle,
    bundle_id,
    load_bundle,
)
from sail_pipelines.integrity.signing import SignKey
from sail_pipelines.provenance import file_md5

__all__ = ["HOLDOUT_CSV", "Rule", "accepted_verdict", "judge", "run"]


def _evaluated(paths: ProjectPaths, key: SignKey) -> tuple[dict[str, Any], LoadedBundle]:
    """The evaluation report and its best candidate's verified bundle, unchanged since then."""
    if not paths.evaluation_report.is_file():
        raise SailError("no reports/evaluation.json: run `sail evaluate` first")
    evaluation = read_json(paths.evaluation_report)
    info = evaluation["candidates"][evaluation["best"]]
    bundle = load_bundle(paths.root / info["bundle"], key)
    if bundle.bundle_id != info["bundle_id"]:
        raise SailError(
            f"bundle {info['bundle']} changed since it was evaluated: run `sail evaluate` again"
        )
    return evaluation, bundle


def _test_split(paths: ProjectPaths, evaluation: dict[str, Any]) -> pd.DataFrame:
    test = read_csv(paths.test_csv)
    if evaluation.get("test_hash") not in (None, file_md5(paths.test_csv)):
        raise SailError(
            "data/split/test.csv changed since it was evaluated: run `sail evaluate` again"
        )
    return test


def _first_report(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    key: SignKey,
    evaluation: dict[str, Any],
    bundle: LoadedBundle,
    test_rows: int,
) -> dict[str, Any]:
    """gate.json as it stands before any rule is judged: a failing verdict."""
    gate, meta = params.gate, bundle.metadata
    info = evaluation["candidates"][evaluation["best"]]
    return {
        "verdict": "fail",
        "candidate": evaluation["best"],
        "estimator": meta.get("estimator"),
        "task": meta["task"],
        "primary_metric": gate.primary_metric,
        "metrics": {k: v for k, v in info["metrics"].items() if isinstance(v, float)},
        "champion": None,
        "tracking_missing": stores.tracking_missing(paths, settings),  # CI, no team server
        "rules": [],
        "tolerance": gate.tolerance,
        "regression_rule": gate.regression_rule,
        "bootstrap": gate.bootstrap.model_dump(),
        "bundle_id": bundle.bundle_id,
        "inference": info.get("inference")
        or {"runtime": "sklearn", "reason": "the evaluation named no serving runtime"},
        "data_hash": meta["data_hash"],
        "train_rows": (meta.get("training_profile") or {}).get("rows"),
        "test_rows": test_rows,
        "git_commit": meta["git_commit"],
        "key_id": key.key_id,
        "mlflow_run_id": info["mlflow_run_id"],
        "judged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _holdout_files(
    params: Params,
    evaluation: dict[str, Any],
    test: pd.DataFrame,
    outputs: Outputs,
    task: str,
    target: str,
) -> dict[str, bytes]:
    """holdout.json (the smoke-test rows and the labelled part's metrics) and holdout.csv: the
    labelled test rows, or a seeded sample of gate.holdout_rows of them, for the next gate."""
    rows = np.arange(len(test))
    if len(test) > params.gate.holdout_rows:
        rng = np.random.default_rng(params.gate.bootstrap.seed)
        rows = np.sort(rng.choice(len(test), params.gate.holdout_rows, replace=False))
    kept = test.iloc[rows]
    labelled = {
        "file": HOLDOUT_CSV,
        "rows": int(len(kept)),
        "test_rows": int(len(test)),
        "target": target,
        "metrics": point(task, kept[target], outputs.subset(rows)),
    }
    return {
        HOLDOUT: json.dumps({**evaluation["holdout"], "labelled": labelled}, indent=2).encode(),
        HOLDOUT_CSV: kept.to_csv(index=False).encode(),
    }


def _finish(
    paths: ProjectPaths, params: Params, client: Any, run_id: str, report: dict[str, Any]
) -> None:
    """gate.json, then the model card beside it, logged to the candidate's MLflow run."""
    write_json(paths.gate_report, report)
    written = card.write(paths, card.build(paths, params))
    for path in written:
        client.log_artifact(run_id, str(path), card.ARTIFACT)


def _register(
    paths: ProjectPaths,
    params: Params,
    client: Any,
    key: SignKey,
    bundle: LoadedBundle,
    evaluation: dict[str, Any],
    scored: tuple[pd.DataFrame, Outputs],
    report: dict[str, Any],
) -> None:
    """Register the accepted model with alias `candidate` and re-sign its bundle as
    models/accepted, with its metrics, registry version and holdout (test rows, outputs)."""
    gate, meta, model = params.gate, bundle.metadata, params.gate.registered_model
    run_id, inference, scores = report["mlflow_run_id"], report["inference"], report["metrics"]
    test, outputs = scored
    tags = {
        "source": client.get_run(run_id).info.artifact_uri + "/" + pyfunc.ARTIFACT,
        "sail.data_hash": meta["data_hash"],
        "sail.git_commit": meta["git_commit"],
    }
    files = {name: data for name, data in bundle.files.items() if name != METADATA}
    if inference["runtime"] != "onnx":  # what the metric step scored is what serves
        files.pop(ONNX_MODEL, None)
    files.update(_holdout_files(params, evaluation, test, outputs, meta["task"], meta["target"]))

    def metadata(version: str) -> dict[str, Any]:
        return {
            **meta,
            "evaluation": {
                "metrics": scores,
                "primary_metric": gate.primary_metric,
                "test_rows": evaluation["test_rows"],
                "mlflow_run_id": run_id,
            },
            "registry": {"model": model, "version": version, "alias": tracking.CANDIDATE},
            "candidate_bundle_id": bundle.bundle_id,
            "inference": inference,
            "signing": {"algorithm": key.algorithm, "key_id": key.key_id, "dev_key": key.dev},
            "model_card": f"runs:/{run_id}/{card.ARTIFACT}",
        }

    example = evaluation["holdout"]["records"]  # MLflow's input example: up to 5 complete rows
    version, accepted_id = accept.release(
        client, model, run_id, tags, paths.accepted_dir, files, metadata, key, example
    )
    report.update(registered_version=version, accepted_bundle_id=accepted_id, registered=True)
    _finish(paths, params, client, run_id, report)


def run(
    paths: ProjectPaths, params: Params, settings: Settings, key: SignKey, register: bool = True
) -> dict[str, Any]:
    """Judge the best candidate; on a pass, register it (unless `register` is off, as for pull
    requests, whose models must never become the `candidate` that main's promotion expects)."""
    if register:
        stores.require(paths, settings, "gate")
    evaluation, bundle = _evaluated(paths, key)
    test = _test_split(paths, evaluation)
    gate, best, meta = params.gate, evaluation["best"], bundle.metadata
    task, target = meta["task"], meta["target"]
    report = _first_report(paths, params, settings, key, evaluation, bundle, int(len(test)))
    run_id, inference = report["mlflow_run_id"], report["inference"]
    client = tracking.client(settings)
    refusal = short_of_evidence(gate, task, test[target], bundle.classes)
    if refusal:
        report["rules"] = [asdict(Rule("minimum evidence", False, f"the test split has {refusal}"))]
        with tracking.reachable(settings, "logging the model card"):
            _finish(paths, params, client, run_id, report)
        raise GateFailed(f"gate refused to judge candidate '{best}': the test split has {refusal}")
    outputs = predict(bundle, test, inference["runtime"])
    champion, champion_outputs = read_champion(settings, client, key, gate, bundle, test, paths)
    measured = compare(task, test[target], outputs, champion_outputs, gate.bootstrap)
    slice_entries = slices.measure(
        gate.slices, gate.bootstrap, task, bundle.classes, test, target, outputs, champion_outputs
    )
    rules = judge(gate, report["metrics"], champion, measured["intervals"], slice_entries)
    if all(r.passed for r in rules):  # served by the runtime the metric step chose, as it will be
        served = dataclasses.replace(bundle, metadata={**meta, "inference": inference})
        rules.append(serving_rule(served, evaluation["holdout"]))
    passed = all(r.passed for r in rules)
    report.update(
        verdict="pass" if passed else "fail",
        champion=champion,
        rules=[asdict(r) for r in rules],
        intervals=measured["intervals"],
        slices=slice_entries,
    )
    if not passed:
        with tracking.reachable(settings, "logging the model card"):
            _finish(paths, params, client, run_id, report)
        failed = "; ".join(r.detail for r in rules if not r.passed)
        raise GateFailed(f"gate failed for candidate '{best}': {failed}")
    if not register:
        report.update(registered_version=None, accepted_bundle_id=None, registered=False)
        with tracking.reachable(settings, "logging the model card"):
            _finish(paths, params, client, run_id, report)
        return report
    with tracking.reachable(settings, "registering the accepted model"):
        _register(paths, params, client, key, bundle, evaluation, (test, outputs), report)
    return report


def accepted_verdict(paths: ProjectPaths, doing: str) -> dict[str, Any]:
    """The last gate report, provided it passed the very bundle now in models/accepted:
    what ships (pushed, packaged) is only ever what the gate accepted."""
    if not paths.gate_report.is_file():
        raise SailError(f"nothing to {doing}: no reports/gate.json, run `sail gate` first")
    report = read_json(paths.gate_report)
    if report.get("verdict") != "pass":
        raise SailError(f"nothing to {doing}: the last gate verdict was 'fail'")
    if bundle_id(paths.accepted_dir) != report.get("accepted_bundle_id"):
        raise SailError(
            "models/accepted does not match the last gate verdict: run `sail gate` again"
        )
    return report
