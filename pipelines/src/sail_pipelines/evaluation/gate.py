"""`sail gate`: a model moves on only if it meets every threshold and does not regress.

The comparison is against the version holding the `champion` alias in the MLflow Model
Registry, within a tolerance, with the champion re-scored on the same test rows. A first
model, with no champion, is judged on thresholds alone. On a pass the winning bundle is
re-signed as the accepted bundle with its metrics, registry version and holdout rows, and the
version gets the `candidate` alias. On a fail nothing is registered or written but the
verdict in reports/gate.json.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sail_pipelines.config import (
    HIGHER_IS_BETTER,
    GateConfig,
    Params,
    ProjectPaths,
    Settings,
)
from sail_pipelines.contract.data import read_csv
from sail_pipelines.errors import GateFailed, SailError
from sail_pipelines.evaluation import accept
from sail_pipelines.evaluation.evaluate import score
from sail_pipelines.files import read_json, write_json
from sail_pipelines.integrations import mlflow_model, tracking
from sail_pipelines.integrity.bundle import (
    HOLDOUT,
    METADATA,
    ONNX_MODEL,
    BundleRejected,
    LoadedBundle,
    bundle_id,
    load_bundle,
)
from sail_pipelines.integrity.signing import SignKey, VerifyKey


@dataclass(frozen=True)
class Rule:
    rule: str
    passed: bool
    detail: str


def judge(gate: GateConfig, scores: dict[str, float], champion: dict[str, Any] | None) -> list[Rule]:
    """Pure verdict: one Rule per threshold, plus the no-regression rule when a champion exists."""
    rules = []
    for t in gate.thresholds:
        value = scores.get(t.metric, float("nan"))
        if t.minimum is not None:
            ok = not math.isnan(value) and value >= t.minimum
            rules.append(Rule(f"{t.metric} >= {t.minimum:g}", ok, f"{t.metric} = {value:.4f}, minimum {t.minimum:g}"))
        if t.maximum is not None:
            ok = not math.isnan(value) and value <= t.maximum
            rules.append(Rule(f"{t.metric} <= {t.maximum:g}", ok, f"{t.metric} = {value:.4f}, maximum {t.maximum:g}"))
    if champion is None:
        return rules
    metric = gate.primary_metric
    mine, theirs = scores.get(metric, float("nan")), champion["metrics"].get(metric)
    name = f"no regression on {metric} vs champion v{champion['version']}"
    if theirs is None:
        rules.append(Rule(name, True, f"champion v{champion['version']} has no recorded {metric}; thresholds decide"))
    elif HIGHER_IS_BETTER[metric]:
        rules.append(Rule(name, not math.isnan(mine) and mine >= theirs - gate.tolerance,
                          f"{metric} = {mine:.4f} vs champion {theirs:.4f}, may drop by at most {gate.tolerance:g}"))
    else:
        rules.append(Rule(name, not math.isnan(mine) and mine <= theirs + gate.tolerance,
                          f"{metric} = {mine:.4f} vs champion {theirs:.4f}, may rise by at most {gate.tolerance:g}"))
    return rules


def serving_rule(bundle: LoadedBundle, holdout: dict[str, Any]) -> Rule:
    """The holdout rows, served through the real API code, come back as the metric step scored them."""
    try:
        accept.serving_check(bundle, holdout)
    except SailError as exc:
        return Rule("serves the holdout rows through the API", False, str(exc).replace("; nothing was registered", ""))
    return Rule("serves the holdout rows through the API", True, f"{len(holdout['records'])} rows, same predictions")


def champion_scores(client: Any, run_id: str, schema: dict[str, Any], paths: ProjectPaths, key: VerifyKey) -> dict[str, Any]:
    """The champion's metrics on today's test set, so both models are judged on the same rows.

    Falls back to the metrics recorded when the champion was evaluated, and says why, when its
    bundle cannot be fetched and verified with this key or expects other features.
    """
    from mlflow.exceptions import MlflowException

    recorded = client.get_run(run_id).data.metrics
    with tempfile.TemporaryDirectory() as scratch:
        try:
            client.download_artifacts(run_id, mlflow_model.ARTIFACT, scratch)
        except (MlflowException, OSError) as exc:
            return {"metrics": recorded, "metrics_source": f"recorded (its bundle could not be fetched: {exc})"}
        try:
            downloaded = mlflow_model.bundle_dir(Path(scratch) / mlflow_model.ARTIFACT)
            champion = load_bundle(downloaded, key)
        except BundleRejected as exc:
            return {"metrics": recorded, "metrics_source": f"recorded (its bundle was refused: {exc})"}
        if champion.metadata["schema"] != schema:
            return {"metrics": recorded, "metrics_source": "recorded (it was trained on other features)"}
        scores, _ = score(champion, read_csv(paths.test_csv))
    return {"metrics": {k: v for k, v in scores.items() if isinstance(v, float)}, "metrics_source": "rescored on this test set"}


def run(paths: ProjectPaths, params: Params, settings: Settings, key: SignKey, register: bool = True) -> dict[str, Any]:
    """Judge the best candidate; on a pass, register it (unless `register` is off, as for pull
    requests, whose models must never become the `candidate` that main's promotion expects)."""
    if not paths.evaluation_report.is_file():
        raise SailError("no reports/evaluation.json: run `sail evaluate` first")
    evaluation = read_json(paths.evaluation_report)
    best = evaluation["best"]
    info = evaluation["candidates"][best]
    bundle = load_bundle(paths.root / info["bundle"], key)
    if bundle.bundle_id != info["bundle_id"]:
        raise SailError(f"bundle {info['bundle']} changed since it was evaluated: run `sail evaluate` again")
    scores = {k: v for k, v in info["metrics"].items() if isinstance(v, float)}
    inference = info.get("inference") or {"runtime": "sklearn",
                                          "reason": "the evaluation named no serving runtime"}
    model = params.gate.registered_model
    client = tracking.client(settings)
    with tracking.reachable(settings, "reading the champion"):
        version = tracking.version_by_alias(client, model, tracking.CHAMPION)
        champion = None
        if version is not None:
            champion = {"version": str(version.version), "run_id": version.run_id,
                        **champion_scores(client, version.run_id, bundle.metadata["schema"], paths, key)}
    rules = judge(params.gate, scores, champion)
    if all(r.passed for r in rules):
        rules.append(serving_rule(bundle, evaluation["holdout"]))
    passed = all(r.passed for r in rules)
    report = {
        "verdict": "pass" if passed else "fail",
        "candidate": best,
        "primary_metric": params.gate.primary_metric,
        "metrics": scores,
        "champion": champion,
        "rules": [asdict(r) for r in rules],
        "tolerance": params.gate.tolerance,
        "bundle_id": bundle.bundle_id,
        "inference": inference,
        "data_hash": bundle.metadata["data_hash"],
        "git_commit": bundle.metadata["git_commit"],
        "key_id": key.key_id,
        "judged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not passed:
        write_json(paths.gate_report, report)
        failed = "; ".join(r.detail for r in rules if not r.passed)
        raise GateFailed(f"gate failed for candidate '{best}': {failed}")
    if not register:
        report.update(registered_version=None, accepted_bundle_id=None, registered=False)
        write_json(paths.gate_report, report)
        return report
    with tracking.reachable(settings, "registering the accepted model"):
        run_id = info["mlflow_run_id"]
        tags = {"source": client.get_run(run_id).info.artifact_uri + "/" + mlflow_model.ARTIFACT,
                "sail.data_hash": bundle.metadata["data_hash"], "sail.git_commit": bundle.metadata["git_commit"]}
        files = {name: data for name, data in bundle.files.items() if name != METADATA}
        if inference["runtime"] != "onnx":  # what the metric step scored is what serves
            files.pop(ONNX_MODEL, None)
        files[HOLDOUT] = json.dumps(evaluation["holdout"], indent=2).encode()

        def metadata(version: str) -> dict[str, Any]:
            return {
                **bundle.metadata,
                "evaluation": {"metrics": scores, "primary_metric": params.gate.primary_metric,
                               "test_rows": evaluation["test_rows"], "mlflow_run_id": run_id},
                "registry": {"model": model, "version": version, "alias": tracking.CANDIDATE},
                "candidate_bundle_id": bundle.bundle_id,
                "inference": inference,
                "signing": {"algorithm": key.algorithm, "key_id": key.key_id, "dev_key": key.dev},
            }

        example = evaluation["holdout"]["records"][:5]
        version, accepted_id = accept.release(client, model, run_id, tags, paths.accepted_dir, files, metadata,
                                              key, example)
    report.update(registered_version=version, accepted_bundle_id=accepted_id, registered=True)
    write_json(paths.gate_report, report)
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
        raise SailError("models/accepted does not match the last gate verdict: run `sail gate` again")
    return report
