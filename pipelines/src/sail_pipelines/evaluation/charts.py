"""Charts a pull-request comment can show: Mermaid `xychart-beta` blocks drawn from numbers.

A comment cannot show a PNG from a CI run (no upload API, no public URL, data: URIs stripped),
but GitHub renders Mermaid code blocks in comments and job summaries. So the test step keeps a
few points of each curve in evaluation.json (`data_*`), and the report draws them as Mermaid
(`mermaid_*`): the ROC curve, residuals by bucket, the primary metric across champions, the
winner's permutation importance per source column.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

ROC_POINTS = 21  # false positive rates 0, 0.05, ..., 1: enough to see the curve's shape
BUCKETS = 10  # residuals by decile of the prediction


def data_roc(y_true: Any, probabilities: Any, classes: list[Any]) -> dict[str, Any] | None:
    """True positive rate at evenly spaced false positive rates: binary on the positive class
    (the last), multiclass micro-averaged over one-vs-rest. None when it is undefined."""
    if probabilities is None or len(classes) < 2:
        return None
    if len(classes) == 2:
        truth, scores = np.asarray(y_true) == classes[-1], np.asarray(probabilities)[:, 1]
    else:
        truth = label_binarize(y_true, classes=classes).ravel()
        scores = np.asarray(probabilities).ravel()
    if truth.all() or not truth.any():
        return None
    fpr, tpr, _ = skm.roc_curve(truth, scores)
    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    return {
        "fpr": [round(float(x), 4) for x in grid],
        "tpr": [round(float(y), 4) for y in np.interp(grid, fpr, tpr)],
        "average": "positive class" if len(classes) == 2 else "micro-average, one-vs-rest",
    }


def data_residuals(y_true: Any, predictions: Any, buckets: int = BUCKETS) -> dict[str, Any] | None:
    """Mean residual (actual - predicted) and rows per bucket of predictions of equal size:
    a model that is biased for high or low values shows it here."""
    actual = np.asarray(y_true, dtype=float)
    predicted = np.asarray(predictions, dtype=float)
    if len(actual) < buckets:
        return None
    order = np.argsort(predicted, kind="stable")
    labels, means, rows = [], [], []
    for part in np.array_split(order, buckets):
        low, high = predicted[part].min(), predicted[part].max()
        labels.append(f"{low:.3g}–{high:.3g}")
        means.append(round(float(np.mean(actual[part] - predicted[part])), 6))
        rows.append(int(len(part)))
    return {"buckets": labels, "mean_residual": means, "rows": rows}


def data(
    task: str, y_true: Any, predictions: Any, probabilities: Any, classes: list[Any]
) -> dict[str, Any]:
    """What the report draws for one candidate, by task."""
    if task == "classification":
        roc = data_roc(y_true, probabilities, classes)
        return {"roc": roc} if roc else {}
    residuals = data_residuals(y_true, predictions)
    return {"residuals": residuals} if residuals else {}


def _label(text: Any) -> str:
    """A quoted Mermaid string: the grammar has no escape for a double quote."""
    return '"' + str(text).replace('"', "'").replace("\n", " ") + '"'


def _number(value: float) -> str:
    """Four significant digits, never in e-notation (Mermaid's grammar has none: 6.3e-05 fails)."""
    return np.format_float_positional(
        float(value), precision=4, unique=False, fractional=False, trim="-"
    )


def _axis_range(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _block(lines: list[str]) -> str:
    return "\n".join(["```mermaid", "xychart-beta", *(f"    {line}" for line in lines), "```"])


def mermaid_roc(roc: dict[str, Any], auc: float | None) -> str:
    """The ROC curve and the diagonal of a model that guesses."""
    title = "ROC curve" + (f" (AUC {auc:.4f})" if auc is not None and math.isfinite(auc) else "")
    return _block(
        [
            f"title {_label(title + ', ' + roc['average'])}",
            f"x-axis {_label('false positive rate')} 0 --> 1",
            f"y-axis {_label('true positive rate')} 0 --> 1",
            "line [" + ", ".join(_number(y) for y in roc["tpr"]) + "]",
            "line [" + ", ".join(_number(x) for x in roc["fpr"]) + "]",
        ]
    )


def mermaid_residuals(residuals: dict[str, Any]) -> str:
    """Mean residual per bucket of predictions, as bars."""
    values = residuals["mean_residual"]
    low, high = _axis_range([*values, 0.0])
    return _block(
        [
            f"title {_label('Mean residual (actual - predicted) by bucket of prediction')}",
            "x-axis [" + ", ".join(_label(b) for b in residuals["buckets"]) + "]",
            f"y-axis {_label('mean residual')} {_number(low)} --> {_number(high)}",
            "bar [" + ", ".join(_number(v) for v in values) + "]",
        ]
    )


def mermaid_history(metric: str, points: list[dict[str, Any]]) -> str | None:
    """The primary metric of each champion in turn, then this candidate's."""
    shown = [
        p for p in points if isinstance(p.get("value"), (int, float)) and math.isfinite(p["value"])
    ]
    if len(shown) < 2:
        return None
    low, high = _axis_range([p["value"] for p in shown])
    return _block(
        [
            f"title {_label(f'{metric} of the champions, then this candidate')}",
            "x-axis [" + ", ".join(_label(p["label"]) for p in shown) + "]",
            f"y-axis {_label(metric)} {_number(low)} --> {_number(high)}",
            "line [" + ", ".join(_number(p["value"]) for p in shown) + "]",
        ]
    )


def mermaid_importance(found: dict[str, Any], shown: int = 12) -> str | None:
    """The loss of the primary metric when each source column is shuffled, largest first."""
    permuted = found.get("permutation") or {}
    order = sorted(permuted, key=lambda c: -permuted[c]["mean"])[:shown]
    if not order:
        return None
    values = [permuted[c]["mean"] for c in order]
    low, high = _axis_range([*values, 0.0])
    title = f"Permutation importance: loss of {found['metric']} when a column is shuffled"
    return _block(
        [
            f"title {_label(title)}",
            "x-axis [" + ", ".join(_label(c) for c in order) + "]",
            f"y-axis {_label('loss of ' + found['metric'])} {_number(low)} --> {_number(high)}",
            "bar [" + ", ".join(_number(v) for v in values) + "]",
        ]
    )
