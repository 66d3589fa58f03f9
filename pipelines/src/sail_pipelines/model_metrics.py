"""Metrics for the test/metric step, and which candidate counts as best."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from sail_pipelines.config import HIGHER_IS_BETTER


def classification(
    y_true: Any, predictions: Any, probabilities: Any, classes: list[Any]
) -> dict[str, Any]:
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    pos_label = classes[-1] if binary else 1
    roc_auc = float("nan")  # no probabilities, or a class missing from y_true: no ROC AUC to be had
    if probabilities is not None:
        try:
            if binary:
                roc_auc = skm.roc_auc_score(y_true, probabilities[:, 1])
            else:
                roc_auc = skm.roc_auc_score(
                    y_true, probabilities, multi_class="ovr", labels=classes
                )
        except ValueError:
            pass
    return {
        "roc_auc": float(roc_auc),
        "f1": float(
            skm.f1_score(y_true, predictions, average=average, pos_label=pos_label, zero_division=0)
        ),
        "accuracy": float(skm.accuracy_score(y_true, predictions)),
        "precision": float(
            skm.precision_score(
                y_true, predictions, average=average, pos_label=pos_label, zero_division=0
            )
        ),
        "recall": float(
            skm.recall_score(
                y_true, predictions, average=average, pos_label=pos_label, zero_division=0
            )
        ),
        "mcc": float(skm.matthews_corrcoef(y_true, predictions)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, predictions)),
        **{
            f"{name}_weighted": float(
                score(y_true, predictions, average="weighted", zero_division=0)
            )
            for name, score in (
                ("f1", skm.f1_score),
                ("precision", skm.precision_score),
                ("recall", skm.recall_score),
            )
        },
        "classes": list(classes),
        "confusion_matrix": skm.confusion_matrix(y_true, predictions, labels=classes).tolist(),
    }


def regression(y_true: Any, predictions: Any) -> dict[str, Any]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predictions))),
        "mae": float(skm.mean_absolute_error(y_true, predictions)),
        "r2": float(skm.r2_score(y_true, predictions)),
    }


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
