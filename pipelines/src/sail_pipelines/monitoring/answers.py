"""What a model container answered, from its prediction log, and the feedback labels for it.

The shadow report and the canary analysis both read containers' prediction logs (the live and
canary containers log to their stdout, a shadow to its own file), key each answered record by
(request id, record), join the labels `sail feedback` keeps, and judge live metrics with the
gate's interval logic. The pieces they share live here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from sail_pipelines.config import HIGHER_IS_BETTER, Params, ProjectPaths
from sail_pipelines.errors import SailError

Key = tuple[str, int]


@dataclass
class Side:
    """One container's logged answers, by (request id, record)."""

    predictions: dict[Key, Any] = field(default_factory=dict)
    probabilities: dict[Key, dict[str, float]] = field(default_factory=dict)
    inputs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # by request id
    errors: int = 0


def parse(lines: Iterable[str | bytes]) -> Side:
    """Prediction-log lines (anything else in the stream is skipped)."""
    side = Side()
    for raw in lines:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if not isinstance(line, dict) or "request_id" not in line:
            continue
        rid = str(line["request_id"])
        if int(line.get("status") or 0) >= 500:
            side.errors += 1
        outputs = line.get("outputs")
        if not isinstance(outputs, dict) or "prediction" not in outputs:
            continue
        side.latency_ms[rid] = float(line.get("latency_ms") or 0.0)
        _add(side, rid, outputs, line.get("inputs") or {})
    return side


def _add(side: Side, rid: str, outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    probabilities = outputs.get("probabilities") or {}
    for i, prediction in enumerate(outputs["prediction"]):
        key = (rid, i)
        side.predictions[key] = prediction
        if probabilities:
            side.probabilities[key] = {c: float(v[i]) for c, v in probabilities.items()}
        side.inputs[key] = {
            k: v[i] for k, v in inputs.items() if isinstance(v, list) and len(v) > i
        }


def container_lines(slot: Mapping[str, Any], since: float, name: str) -> list[bytes]:
    """A container's prediction log: its stdout since `since` (seconds since the epoch)."""
    from sail_pipelines.clients import containers
    from sail_pipelines.delivery import bluegreen

    container = bluegreen.find(containers.docker_client(), slot)
    if container is None:
        raise SailError(f"the {name} container {slot['container']} is gone: nothing to compare")
    start = float(since) if since > 0 else None  # docker wants a positive time, or none
    return container.logs(stdout=True, stderr=False, since=start).splitlines()


def feedback_labels(paths: ProjectPaths) -> dict[Key, str]:
    """The labels `sail feedback` keeps, by (request id, record); empty without any."""
    from sail_pipelines.monitoring import feedback

    source = feedback.labels_path(paths)
    if not source.is_file():
        return {}
    labels = feedback.read_labels(source)
    return {(str(r), int(n)): v for r, n, v in labels[[*feedback.KEY, "label"]].itertuples(False)}


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def truth(task: str, labels: list[str], predictions: np.ndarray) -> Any:
    """Labels read as text, typed like the model's answers (numbers for a regression)."""
    if task == "regression" or all(numeric(x) for x in predictions):
        try:
            return np.array([float(x) for x in labels])
        except ValueError as exc:
            raise SailError(f"a feedback label is not a number: {exc}") from exc
    return np.array(labels, dtype=object)


def outputs(task: str, side: Side, keys: list[Key], values: np.ndarray, y_true: Any) -> Any:
    """The answers `values` for `keys` as the gate's Outputs (probabilities where logged; without
    them the classes are the ones answered or labelled, in order, as scikit-learn's are)."""
    from sail_pipelines.evaluation.bootstrap import Outputs

    if task == "regression":
        return Outputs(values.astype(float))
    predictions = np.array([float(x) if numeric(x) else x for x in values])
    if not all(k in side.probabilities for k in keys):
        seen = sorted({*predictions, *y_true}, key=lambda c: (isinstance(c, str), c))
        return Outputs(predictions, None, tuple(seen))
    classes = tuple(side.probabilities[keys[0]])
    matrix = np.array([[side.probabilities[k][c] for c in classes] for k in keys])
    typed = tuple(float(c) for c in classes) if numeric(predictions[0]) else classes
    return Outputs(predictions, matrix, typed)


def worse(params: Params, compared: dict[str, Any], candidate: str, champion: str) -> list[str]:
    """The gate's interval logic: a metric whose whole interval of candidate minus champion
    lies on the worse side of zero (beyond the gate's tolerance) is worse live."""
    found = []
    margin = params.gate.tolerance
    for metric, interval in compared["intervals"].items():
        difference = interval.get("difference")
        if not difference:
            continue
        low, high = difference
        higher = HIGHER_IS_BETTER.get(metric, True)
        if (higher and high < -margin) or (not higher and low > margin):
            found.append(f"live {metric}: {candidate} minus {champion} in [{low:.4f}, {high:.4f}]")
    return found


def read_log_file(path: Path, name: str) -> Side:
    if not path.is_file():
        raise SailError(f"the {name}'s prediction log {path} is missing: deploy the {name} again")
    with path.open(encoding="utf-8", errors="replace") as lines:
        return parse(lines)
