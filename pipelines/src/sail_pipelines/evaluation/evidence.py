"""What one set of labelled rows says about two models, and whether it is enough to judge.

The gate asks this of the new test split, of the champion's signed holdout and of every
slice: the point metrics (scikit-learn, the numbers `sail evaluate` reports) with paired
bootstrap intervals, or the reason the rows are too few to judge at all. A canary and stable
answer different requests: `compare_apart` gives their intervals from independent resamples.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning

from sail_pipelines import model_metrics as metrics
from sail_pipelines.config import BootstrapConfig
from sail_pipelines.evaluation import bootstrap
from sail_pipelines.evaluation.bootstrap import Outputs


def point(task: str, y_true: Any, outputs: Outputs) -> dict[str, float]:
    """The task's metrics on these rows (an undefined one, e.g. roc_auc with one class, is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if task == "regression":
            result = metrics.regression(y_true, outputs.predictions)
        else:
            result = metrics.classification(
                y_true, outputs.predictions, outputs.probabilities, list(outputs.classes)
            )
    return {name: value for name, value in result.items() if isinstance(value, float)}


def compare(
    task: str, y_true: Any, candidate: Outputs, champion: Outputs | None, config: BootstrapConfig
) -> dict[str, Any]:
    """Both models on the same rows: point metrics and paired intervals (no champion: None)."""
    return {
        "rows": int(len(y_true)),
        "candidate": point(task, y_true, candidate),
        "champion": None if champion is None else point(task, y_true, champion),
        "intervals": bootstrap.intervals(task, y_true, candidate, champion, config),
    }


def compare_apart(
    task: str,
    candidate: tuple[Any, Outputs],
    champion: tuple[Any, Outputs],
    config: BootstrapConfig,
) -> dict[str, Any]:
    """Two models each on its own labelled rows (a canary and stable): point metrics of each and
    intervals from independent resamples of each side."""
    return {
        "rows": {"candidate": int(len(candidate[0])), "champion": int(len(champion[0]))},
        "candidate": point(task, *candidate),
        "champion": point(task, *champion),
        "intervals": bootstrap.unpaired_intervals(task, candidate, champion, config),
    }


def too_few(
    y_true: Any,
    task: str,
    classes: list[Any],
    min_rows: int,
    min_per_class: int,
    rows_setting: str,
    class_setting: str,
) -> str | None:
    """Why these rows cannot be judged ('30 rows, fewer than gate.min_test_rows = 50'), or None."""
    labels = pd.Series(y_true)
    if len(labels) < min_rows:
        return f"{len(labels)} rows, fewer than {rows_setting} = {min_rows}"
    if task == "classification":
        counts = labels.value_counts()
        short = [
            f"{int(counts.get(c, 0))} rows of class {c!r}"
            for c in classes
            if counts.get(c, 0) < min_per_class
        ]
        if short:
            return f"{', '.join(short)}, fewer than {class_setting} = {min_per_class}"
    return None
