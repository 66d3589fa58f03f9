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
import io
import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from sail_pipelines.config import (
    HIGHER_IS_BETTER,
    GateConfig,
    Params,
    ProjectPaths,
    Settings,
    Threshold,
    stores,
)
from sail_pipelines.contract.data import read_csv
from sail_pipelines.errors import GateFailed, SailError
from sail_pipelines.evaluation import accept, card, slices
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.evaluate import predict
from sail_pipelines.evaluation.evidence import compare, point, too_few
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
from sail_pipelines.provenance import file_md5

# In accepted bundles beside holdout.json: labelled test rows, the next gate's second yardstick.
HOLDOUT_CSV = "holdout.csv"


@dataclass(frozen=True)
class Rule:
    rule: str
    passed: bool
    detail: str
    judged: bool = True  # False: too little evidence; reported as such, it neither passes nor fails


def judge(
    gate: GateConfig,
    scores: dict[str, float],
    champion: dict[str, Any] | None,
    intervals: dict[str, Any] | None = None,
    slice_entries: Sequence[dict[str, Any]] = (),
) -> list[Rule]:
    """Pure verdict: thresholds; with a champion, no regression on the test split and on its
    holdout, and the suspicious-data check; then the slice rules that params.yaml asks for."""
    rules = _threshold_rules(gate.thresholds, scores)
    if champion is not None:
        rules.append(_test_split_rule(gate, scores, champion, intervals or {}))
        if "holdout" in champion:
            rules.append(_holdout_rule(gate, champion))
        if gate.suspicious_drop is not None and "recorded" in champion:
            rules.append(_suspicious_rule(gate, champion))
    return rules + _slice_rules(gate, list(slice_entries), champion)


def _threshold_rules(
    thresholds: tuple[Threshold, ...], scores: dict[str, float], prefix: str = ""
) -> list[Rule]:
    rules = []
    for t in thresholds:
        value = scores.get(t.metric, float("nan"))
        if t.minimum is not None:
            ok = not math.isnan(value) and value >= t.minimum
            rules.append(
                Rule(
                    f"{prefix}{t.metric} >= {t.minimum:g}",
                    ok,
                    f"{t.metric} = {value:.4f}, minimum {t.minimum:g}",
                )
            )
        if t.maximum is not None:
            ok = not math.isnan(value) and value <= t.maximum
            rules.append(
                Rule(
                    f"{prefix}{t.metric} <= {t.maximum:g}",
                    ok,
                    f"{t.metric} = {value:.4f}, maximum {t.maximum:g}",
                )
            )
    return rules


def serving_rule(bundle: LoadedBundle, holdout: dict[str, Any]) -> Rule:
    """The holdout rows, served through the real API code, come back as the metric step scored
    them."""
    try:
        accept.serving_check(bundle, holdout)
    except SailError as exc:
        return Rule(
            "serves the holdout rows through the API",
            False,
            str(exc).replace("; nothing was registered", ""),
        )
    return Rule(
        "serves the holdout rows through the API",
        True,
        f"{len(holdout['records'])} rows, same predictions",
    )


def regresses(
    gate: GateConfig, mine: float, theirs: float, difference: list[float] | None
) -> tuple[bool, str]:
    """Whether the candidate regresses on the primary metric, and the numbers that say so.

    "point": its value is worse than the champion's by more than the tolerance. "confidence":
    even the end of the interval of the difference most favourable to the candidate is, so the
    regression holds at the configured level and is not noise.
    """
    metric, tolerance = gate.primary_metric, gate.tolerance
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    delta = mine - theirs
    level = f"{gate.bootstrap.level:.0%}"
    shown = f", {level} CI [{difference[0]:+.4f}, {difference[1]:+.4f}]" if difference else ""
    numbers = f"{metric} = {mine:.4f} vs champion {theirs:.4f} (Δ {delta:+.4f}{shown})"
    if math.isnan(mine):
        return True, f"{metric} = nan vs champion {theirs:.4f}"
    if gate.regression_rule == "confidence" and difference:
        best_case = difference[1] if sign > 0 else difference[0]
        way, bound = (
            ("below" if sign > 0 else "above"),
            (f"{-sign * tolerance:+g}" if tolerance else "0"),
        )
        return sign * best_case < -tolerance, (
            f"{numbers}; fails only when the whole interval lies {way} {bound} (confidence rule)"
        )
    allowed = f"may {'drop' if sign > 0 else 'rise'} by at most {tolerance:g}"
    if gate.regression_rule == "confidence":
        allowed += " (point estimate: no interval without both models' predictions)"
    return sign * delta < -tolerance, f"{numbers}, {allowed}"


def _test_split_rule(
    gate: GateConfig, scores: dict[str, float], champion: dict[str, Any], intervals: dict[str, Any]
) -> Rule:
    metric = gate.primary_metric
    mine, theirs = scores.get(metric, float("nan")), champion["metrics"].get(metric)
    name = f"no regression on {metric} vs champion v{champion['version']}"
    if theirs is None or math.isnan(theirs):
        return Rule(
            name,
            True,
            f"champion v{champion['version']} has no recorded {metric}; thresholds decide",
            judged=False,
        )
    failed, detail = regresses(gate, mine, theirs, (intervals.get(metric) or {}).get("difference"))
    return Rule(name, not failed, detail)


def _holdout_rule(gate: GateConfig, champion: dict[str, Any]) -> Rule:
    holdout = champion["holdout"]
    metric = gate.primary_metric
    name = f"no regression on {metric} vs champion v{champion['version']} on its signed holdout"
    if not holdout.get("judged"):
        return Rule(name, True, f"not judged: {holdout['reason']}", judged=False)
    difference = (holdout["intervals"].get(metric) or {}).get("difference")
    failed, detail = regresses(
        gate, holdout["candidate"][metric], holdout["champion"][metric], difference
    )
    unseen, version = holdout["unseen_rows"], champion["version"]
    where = f"on champion v{version}'s holdout ({unseen} rows the candidate never trained on)"
    return Rule(name, not failed, f"{where}: {detail}")


def _suspicious_rule(gate: GateConfig, champion: dict[str, Any]) -> Rule:
    """The champion far below its record on the new split, yet as recorded on its own holdout:
    the model did not change, so the new test data did."""
    metric, limit, version = gate.primary_metric, gate.suspicious_drop, champion["version"]
    name = f"test data consistent with champion v{version}'s holdout"
    holdout = champion.get("holdout") or {}
    recorded = champion["recorded"].get(metric)
    on_holdout, holdout_recorded = (
        (holdout.get("champion_all_rows") or {}).get(metric),
        holdout.get("recorded", {}).get(metric),
    )
    if not champion.get("rescored") or None in (recorded, on_holdout, holdout_recorded):
        return Rule(
            name,
            True,
            "not judged: needs the champion re-scored on the new test split and on its "
            "signed holdout, and its recorded metrics",
            judged=False,
        )
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    now = champion["metrics"][metric]
    drop, holdout_drop = sign * (recorded - now), sign * (holdout_recorded - on_holdout)
    numbers = (
        f"champion v{version} scores {metric} {now:.4f} on the new test split against "
        f"{recorded:.4f} recorded (drop {drop:.4f}, gate.suspicious_drop {limit:g}) and "
        f"{on_holdout:.4f} on its signed holdout against {holdout_recorded:.4f} recorded"
    )
    if holdout_drop > limit:
        return Rule(
            name,
            True,
            f"not judged: the champion no longer scores as recorded on its own holdout, "
            f"so its environment changed, not only the data: {numbers}",
            judged=False,
        )
    if drop > limit:
        return Rule(name, False, f"suspicious test data: {numbers}")
    return Rule(name, True, numbers)


def _slice_rules(
    gate: GateConfig, entries: list[dict[str, Any]], champion: dict[str, Any] | None
) -> list[Rule]:
    """Every judged slice must meet gate.slices.thresholds, and (if asked) not regress against the
    champion's same slice. Too-small slices are named in the detail; with none judged, neither is
    the rule."""
    config = gate.slices
    judged = [e for e in entries if e["judged"]]
    small = "".join(
        f"; not judged: {slices.label(e)} ({e['reason']})" for e in entries if not e["judged"]
    )
    bounds = [
        Threshold(t.metric, minimum=t.minimum) for t in config.thresholds if t.minimum is not None
    ]
    bounds += [
        Threshold(t.metric, maximum=t.maximum) for t in config.thresholds if t.maximum is not None
    ]
    rules = []
    for bound in bounds:
        [named] = _threshold_rules((bound,), {})
        failures = [
            f"{slices.label(e)}: {rule.detail} ({e['rows']} rows)"
            for e in judged
            for rule in _threshold_rules((bound,), e["candidate"])
            if not rule.passed
        ]
        rules.append(_slice_rule(f"in every slice: {named.rule}", judged, failures, small))
    if config.no_regression and champion is not None and champion.get("rescored"):
        metric = gate.primary_metric
        failures = []
        for e in judged:
            difference = (e["intervals"].get(metric) or {}).get("difference")
            failed, detail = regresses(
                gate, e["candidate"][metric], e["champion"][metric], difference
            )
            if failed:
                failures.append(f"{slices.label(e)}: {detail} ({e['rows']} rows)")
        rules.append(
            _slice_rule(
                f"no slice regresses on {metric} vs champion v{champion['version']}",
                judged,
                failures,
                small,
            )
        )
    return rules


def _slice_rule(name: str, judged: list[dict[str, Any]], failures: list[str], small: str) -> Rule:
    if not judged:
        return Rule(name, True, f"not judged: no slice has enough rows{small}", judged=False)
    detail = "; ".join(failures) if failures else f"{len(judged)} slice(s) meet it"
    return Rule(name, not failures, detail + small)


def fetch_champion(
    client: Any, run_id: str, schema: dict[str, Any], key: VerifyKey
) -> tuple[LoadedBundle | None, dict[str, float], str]:
    """The champion's verified accepted bundle (None when it cannot be fetched, is refused, or
    expects other features), the metrics it was accepted with, and where those came from."""
    from mlflow.exceptions import MlflowException

    recorded = client.get_run(run_id).data.metrics
    try:
        champion = mlflow_model.download_bundle(client, run_id, key)
    except (MlflowException, OSError) as exc:
        return None, recorded, f"recorded (its bundle could not be fetched: {exc})"
    except BundleRejected as exc:
        return None, recorded, f"recorded (its bundle was refused: {exc})"
    if champion.metadata["schema"] != schema:
        return None, recorded, "recorded (it was trained on other features)"
    signed = (champion.metadata.get("evaluation") or {}).get("metrics") or recorded
    return champion, signed, "rescored on this test set"


def champion_history(client: Any, model: str, metric: str, last: int = 10) -> list[dict[str, Any]]:
    """The metric each champion was accepted with, oldest first, for the report's chart: the
    versions the audit trail's promotions and rollbacks made champion (read, not verified: a chart
    decides nothing; promote and rollback verify it), else only today's champion."""
    from mlflow.exceptions import MlflowException

    try:
        line = [json.loads(text).get("to") for _, text in tracking.audit_tags(client, model)]
        current = tracking.version_by_alias(client, model, tracking.CHAMPION)
        line = [str(v) for v in line if v] or ([str(current.version)] if current else [])
        history = []
        for number in line[-last:]:
            run_id = client.get_model_version(model, number).run_id
            history.append(
                {"version": number, "value": client.get_run(run_id).data.metrics.get(metric)}
            )
        return history
    except (MlflowException, OSError, ValueError, AttributeError):
        return []


def seen_in(rows: pd.DataFrame, train: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Which rows have exactly the features of some training row: the candidate trained on them."""

    def keys(frame: pd.DataFrame) -> pd.Series:
        plain_columns = {
            c: frame[c].astype(float) if is_numeric_dtype(frame[c]) else frame[c].astype(str)
            for c in features
        }
        return pd.util.hash_pandas_object(pd.DataFrame(plain_columns), index=False)

    return keys(rows).isin(set(keys(train))).to_numpy()


def _short_of_evidence(gate: GateConfig, task: str, y_true: Any, classes: list[Any]) -> str | None:
    return too_few(
        y_true,
        task,
        classes,
        gate.min_test_rows,
        gate.min_rows_per_class,
        "gate.min_test_rows",
        "gate.min_rows_per_class",
    )


def holdout_comparison(
    gate: GateConfig, champion: LoadedBundle, candidate: LoadedBundle, train: pd.DataFrame
) -> dict[str, Any]:
    """Both models on the champion's signed holdout, on the rows the candidate never trained on;
    and the champion on all of it, against what it scored there when it was accepted."""
    if HOLDOUT_CSV not in champion.files:
        return {
            "judged": False,
            "reason": "its bundle carries no labelled holdout (accepted before the gate kept one)",
        }
    labelled = pd.read_csv(io.BytesIO(champion.files[HOLDOUT_CSV]))
    target, task = champion.metadata["target"], champion.metadata["task"]
    everything = predict(champion, labelled)
    seen = seen_in(labelled, train, candidate.schema.feature_names)
    unseen = labelled[~seen]
    result: dict[str, Any] = {
        "rows": int(len(labelled)),
        "unseen_rows": int(len(unseen)),
        "recorded": json.loads(champion.files[HOLDOUT]).get("labelled", {}).get("metrics", {}),
        "champion_all_rows": point(task, labelled[target], everything),
    }
    short = _short_of_evidence(gate, task, unseen[target], candidate.classes)
    if short:
        reason = (
            f"{int(seen.sum())} of its {len(labelled)} rows are in the candidate's training split; "
            f"the rest has {short}"
        )
        return {**result, "judged": False, "reason": reason}
    judged = compare(
        task,
        unseen[target],
        predict(candidate, unseen),
        everything.subset(np.flatnonzero(~seen)),
        gate.bootstrap,
    )
    return {**result, **judged, "rows": int(len(labelled)), "judged": True, "reason": None}


def _read_champion(
    settings: Settings,
    client: Any,
    key: VerifyKey,
    gate: GateConfig,
    candidate: LoadedBundle,
    test: pd.DataFrame,
    paths: ProjectPaths,
) -> tuple[dict[str, Any] | None, Outputs | None]:
    """The champion as gate.json records it (None without one), and its outputs on the test
    split (None when it could not be re-scored)."""
    with tracking.reachable(settings, "reading the champion"):
        version = tracking.version_by_alias(client, gate.registered_model, tracking.CHAMPION)
        if version is None:
            return None, None
        bundle, recorded, source = fetch_champion(
            client, version.run_id, candidate.metadata["schema"], key
        )
        history = champion_history(client, gate.registered_model, gate.primary_metric)
    entry: dict[str, Any] = {
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics_source": source,
        "recorded": recorded,
        "rescored": bundle is not None,
        "history": history,
    }
    if bundle is None:
        return {**entry, "metrics": recorded}, None
    outputs = predict(bundle, test)
    entry["metrics"] = point(bundle.metadata["task"], test[bundle.metadata["target"]], outputs)
    entry["holdout"] = holdout_comparison(
        gate, bundle, candidate, _training_split(paths, candidate)
    )
    return entry, outputs


def _training_split(paths: ProjectPaths, candidate: LoadedBundle) -> pd.DataFrame:
    trained_on = candidate.metadata.get("train_hash")
    if not paths.train_csv.is_file() or file_md5(paths.train_csv) != trained_on:
        raise SailError(
            "data/split/train.csv is missing or is not the split the candidate trained on: the "
            "gate needs it to leave the candidate's training rows out of the champion's holdout"
        )
    return read_csv(paths.train_csv)


def _test_split(paths: ProjectPaths, evaluation: dict[str, Any]) -> pd.DataFrame:
    test = read_csv(paths.test_csv)
    if evaluation.get("test_hash") not in (None, file_md5(paths.test_csv)):
        raise SailError(
            "data/split/test.csv changed since it was evaluated: run `sail evaluate` again"
        )
    return test


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


def run(
    paths: ProjectPaths, params: Params, settings: Settings, key: SignKey, register: bool = True
) -> dict[str, Any]:
    """Judge the best candidate; on a pass, register it (unless `register` is off, as for pull
    requests, whose models must never become the `candidate` that main's promotion expects)."""
    if register:
        stores.require(paths, settings, "gate")
    if not paths.evaluation_report.is_file():
        raise SailError("no reports/evaluation.json: run `sail evaluate` first")
    evaluation = read_json(paths.evaluation_report)
    best = evaluation["best"]
    info = evaluation["candidates"][best]
    run_id = info["mlflow_run_id"]
    bundle = load_bundle(paths.root / info["bundle"], key)
    if bundle.bundle_id != info["bundle_id"]:
        raise SailError(
            f"bundle {info['bundle']} changed since it was evaluated: run `sail evaluate` again"
        )
    test = _test_split(paths, evaluation)
    gate = params.gate
    meta = bundle.metadata
    task, target = meta["task"], meta["target"]
    scores = {k: v for k, v in info["metrics"].items() if isinstance(v, float)}
    inference = info.get("inference") or {
        "runtime": "sklearn",
        "reason": "the evaluation named no serving runtime",
    }
    model = gate.registered_model
    report: dict[str, Any] = {
        "verdict": "fail",
        "candidate": best,
        "estimator": meta.get("estimator"),
        "task": task,
        "primary_metric": gate.primary_metric,
        "metrics": scores,
        "champion": None,
        "tracking_missing": stores.tracking_missing(paths, settings),  # CI, no team server
        "rules": [],
        "tolerance": gate.tolerance,
        "regression_rule": gate.regression_rule,
        "bootstrap": asdict(gate.bootstrap),
        "bundle_id": bundle.bundle_id,
        "inference": inference,
        "data_hash": meta["data_hash"],
        "train_rows": (meta.get("training_profile") or {}).get("rows"),
        "test_rows": int(len(test)),
        "git_commit": meta["git_commit"],
        "key_id": key.key_id,
        "mlflow_run_id": run_id,
        "judged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    client = tracking.client(settings)
    refusal = _short_of_evidence(gate, task, test[target], bundle.classes)
    if refusal:
        report["rules"] = [asdict(Rule("minimum evidence", False, f"the test split has {refusal}"))]
        with tracking.reachable(settings, "logging the model card"):
            _finish(paths, params, client, run_id, report)
        raise GateFailed(f"gate refused to judge candidate '{best}': the test split has {refusal}")
    outputs = predict(bundle, test, inference["runtime"])
    champion, champion_outputs = _read_champion(settings, client, key, gate, bundle, test, paths)
    measured = compare(task, test[target], outputs, champion_outputs, gate.bootstrap)
    slice_entries = slices.measure(
        gate.slices, gate.bootstrap, task, bundle.classes, test, target, outputs, champion_outputs
    )
    rules = judge(gate, scores, champion, measured["intervals"], slice_entries)
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
        tags = {
            "source": client.get_run(run_id).info.artifact_uri + "/" + mlflow_model.ARTIFACT,
            "sail.data_hash": meta["data_hash"],
            "sail.git_commit": meta["git_commit"],
        }
        files = {name: data for name, data in bundle.files.items() if name != METADATA}
        if inference["runtime"] != "onnx":  # what the metric step scored is what serves
            files.pop(ONNX_MODEL, None)
        files.update(_holdout_files(params, evaluation, test, outputs, task, target))

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
