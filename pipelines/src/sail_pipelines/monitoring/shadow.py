"""`sail shadow report`: the shadow against the live container on the same requests.

The live container logs its predictions to its stdout (the image's default), the shadow to its
own file (delivery/shadow.py); the router gave both the same request id. Lines with outputs
are paired by (request id, record) and compared: agreement (the same label for a classifier;
for a regression, a value within `promotion.shadow_tolerance` of the live values' standard
deviation), the confusion between the two, the score differences (the probability each gave
the live answer's class, or the values), latency of each from the logs, the disagreements
worth a look with their inputs, and, where feedback labels came back (`sail feedback`), both
models' live metrics with paired bootstrap intervals. It decides `pass`, `hold` (too few
paired requests, and how many more) or `fail`; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.monitoring import answers
from sail_pipelines.monitoring.answers import Side

TOP = 10  # disagreements listed


@dataclass(frozen=True)
class Paired:
    keys: list[tuple[str, int]]
    stable: np.ndarray  # predictions, object (classification) or float
    shadow: np.ndarray
    scores: np.ndarray | None  # per record: the score difference, shadow minus stable
    agree: np.ndarray  # bool per record
    requests: int  # paired requests


def pair(stable: Side, shadow: Side, task: str, tolerance: float) -> Paired:
    keys = sorted(set(stable.predictions) & set(shadow.predictions))
    a = [stable.predictions[k] for k in keys]
    b = [shadow.predictions[k] for k in keys]
    if task == "classification":
        s, h = np.array(a, dtype=object), np.array(b, dtype=object)
        agree = np.array([str(x) == str(y) for x, y in zip(a, b, strict=True)], dtype=bool)
        scores = None
        if keys and all(k in stable.probabilities and k in shadow.probabilities for k in keys):
            scores = np.array(
                [
                    shadow.probabilities[k].get(str(x), np.nan) - stable.probabilities[k][str(x)]
                    for k, x in zip(keys, a, strict=True)
                ]
            )
    else:
        s, h = np.array(a, dtype=float), np.array(b, dtype=float)
        scores = h - s
        spread = float(np.std(s)) if len(s) > 1 else 0.0
        agree = np.abs(scores) <= tolerance * (spread or 1.0)
    return Paired(keys, s, h, scores, agree, len({k[0] for k in keys}))


def confusion(paired: Paired) -> dict[str, Any]:
    """Rows: the live container's label; columns: the shadow's."""
    classes = sorted({str(x) for x in (*paired.stable, *paired.shadow)})
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for x, y in zip(paired.stable, paired.shadow, strict=True):
        matrix[index[str(x)], index[str(y)]] += 1
    return {"classes": classes, "matrix": matrix.tolist()}


def latency(side: Side, keys: set[str]) -> dict[str, float | None]:
    values = np.array([v for k, v in side.latency_ms.items() if k in keys])
    if values.size == 0:
        return {"p50_ms": None, "p99_ms": None}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
    }


def disagreements(paired: Paired, stable: Side, top: int = TOP) -> list[dict[str, Any]]:
    """The disagreeing records with the largest score difference first, with their inputs."""
    rows = np.flatnonzero(~paired.agree)
    if paired.scores is not None:
        rows = rows[np.argsort(-np.nan_to_num(np.abs(paired.scores[rows])), kind="stable")]
    listed = []
    for i in rows[:top]:
        rid, record = paired.keys[i]
        listed.append(
            {
                "request_id": rid,
                "record": record,
                "stable": _plain(paired.stable[i]),
                "shadow": _plain(paired.shadow[i]),
                "score_difference": None
                if paired.scores is None
                else round(float(paired.scores[i]), 6),
                "inputs": stable.inputs.get((rid, record), {}),
            }
        )
    return listed


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def labelled(
    paths: ProjectPaths, params: Params, paired: Paired, stable: Side, shadow: Side
) -> dict[str, Any] | None:
    """Both models' live metrics on the paired records feedback labels came back for, with the
    gate's paired bootstrap intervals (shadow minus live); None without labels."""
    from sail_pipelines.evaluation import evidence

    found = answers.feedback_labels(paths)
    rows = [i for i, k in enumerate(paired.keys) if k in found]
    if not rows:
        return None
    keys = [paired.keys[i] for i in rows]
    task = params.task
    y_true = answers.truth(task, [found[k] for k in keys], paired.stable[rows])
    candidate = answers.outputs(task, shadow, keys, paired.shadow[rows], y_true)
    live = answers.outputs(task, stable, keys, paired.stable[rows], y_true)
    compared = evidence.compare(task, y_true, candidate, live, params.gate.bootstrap)
    return {**compared, "worse": answers.worse(params, compared, "shadow", "live")}


def decide(params: Params, paired: Paired, live: dict[str, Any] | None) -> tuple[str, str]:
    """pass, hold or fail, and the one line that says why."""
    config = params.promotion
    n, rate = paired.requests, float(paired.agree.mean()) if len(paired.agree) else 0.0
    head = (
        f"shadow: {rate:.1%} agreement over {n:,} paired requests "
        f"(min {config.min_shadow_agreement:.0%})"
    )
    if n < config.min_live_requests:
        more = config.min_live_requests - n
        return "hold", f"{head}; hold: {more:,} more paired requests needed"
    if rate < config.min_shadow_agreement:
        return "fail", f"{head}; fail: agreement below the minimum"
    if live and live["worse"]:
        return "fail", f"{head}; fail: {live['worse'][0]}"
    return "pass", f"{head}; pass"
