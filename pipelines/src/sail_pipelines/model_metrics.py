"""Metrics for the test/metric step, and which candidate counts as best."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn import metrics as skm

from sail_pipelines.config import HIGHER_IS_BETTER


def _roc_auc(y_true: Any, probabilities: Any, classes: list[Any]) -> float:
    """NaN without probabilities, or with a class missing from y_true: no ROC AUC to be had."""
    if probabilities is None:
        return float("nan")
    try:
        if len(classes) == 2:
            return float(skm.roc_auc_score(y_true, probabilities[:, 1]))
        return float(skm.roc_auc_score(y_true, probabilities, multi_class="ovr", labels=classes))
    except ValueError:
        return float("nan")


def _averaged(score: Callable[..., Any], average: str | None = None) -> Callable[..., float]:
    """F1, precision or recall: binary on the last class for two classes, else macro (or the
    `average` asked for)."""

    def compute(y_true: Any, predictions: Any, _: Any, classes: list[Any]) -> float:
        binary = len(classes) == 2
        how = average or ("binary" if binary else "macro")
        pos_label = classes[-1] if binary else 1
        return float(score(y_true, predictions, average=how, pos_label=pos_label, zero_division=0))

    return compute


# Each classification metric from (y_true, predictions, probabilities, classes), so that one of
# them can be scored alone (permutation importance and the search score hundreds of times).
CLASSIFICATION: dict[str, Callable[[Any, Any, Any, list[Any]], float]] = {
    "roc_auc": lambda y, _p, prob, classes: _roc_auc(y, prob, classes),
    "f1": _averaged(skm.f1_score),
    "accuracy": lambda y, p, _prob, _c: float(skm.accuracy_score(y, p)),
    "precision": _averaged(skm.precision_score),
    "recall": _averaged(skm.recall_score),
    "mcc": lambda y, p, _prob, _c: float(skm.matthews_corrcoef(y, p)),
    "balanced_accuracy": lambda y, p, _prob, _c: float(skm.balanced_accuracy_score(y, p)),
    "f1_weighted": _averaged(skm.f1_score, "weighted"),
    "precision_weighted": _averaged(skm.precision_score, "weighted"),
    "recall_weighted": _averaged(skm.recall_score, "weighted"),
}
REGRESSION: dict[str, Callable[[Any, Any], float]] = {
    "rmse": lambda y, p: float(np.sqrt(skm.mean_squared_error(y, p))),
    "mae": lambda y, p: float(skm.mean_absolute_error(y, p)),
    "r2": lambda y, p: float(skm.r2_score(y, p)),
}


def classification(
    y_true: Any, predictions: Any, probabilities: Any, classes: list[Any]
) -> dict[str, Any]:
    return {
        **{
            name: compute(y_true, predictions, probabilities, classes)
            for name, compute in CLASSIFICATION.items()
        },
        "classes": list(classes),
        "confusion_matrix": skm.confusion_matrix(y_true, predictions, labels=classes).tolist(),
    }


def regression(y_true: Any, predictions: Any) -> dict[str, Any]:
    return {name: compute(y_true, predictions) for name, compute in REGRESSION.items()}


def score(
    metric: str, y_true: Any, predictions: Any, probabilities: Any, classes: list[Any] | None
) -> float:
    """One metric alone, equal to its value in `classification` (classes given) or
    `regression` (classes None)."""
    if classes is None:
        return REGRESSION[metric](y_true, predictions)
    return CLASSIFICATION[metric](y_true, predictions, probabilities, classes)


def better(metric: str, a: float, b: float) -> bool:
    """True when value a beats value b on this metric."""
    return a > b if HIGHER_IS_BETTER[metric] else a < b


def best(results: dict[str, dict[str, Any]], metric: str) -> str:
    """Name of the best candidate on the primary metric; ties go to the first listed (params
    order)."""
    winner = None
    for name, scores in results.items():
        value = scores[metric]
        if np.isnan(value):
            continue
        if winner is None or better(metric, value, results[winner][metric]):
            winner = name
    if winner is None:
        winner = next(iter(results))
    return winner
