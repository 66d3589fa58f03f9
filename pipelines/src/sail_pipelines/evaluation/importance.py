"""Global importance of each source column for the winning candidate, on the test split.

- Permutation importance: a source column is shuffled in the raw test rows, before the STL, so
  a category's one-hot group and a date's calendar features move together, and the primary
  metric is scored again by the runtime that will serve. The importance is how much worse the
  metric gets (signed so that positive means the model relies on the column), over REPEATS
  seeded shuffles: their mean and a 95% t-interval of that mean.
- Mean |contribution|: the average absolute per-record explanation of each source column
  (`inference/explain.py`), on up to CONTRIBUTION_ROWS test rows; absent, with the reason, for a
  model without an explainer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sail_pipelines import model_metrics as metrics
from sail_pipelines.config import Params
from sail_pipelines.config.choices import HIGHER_IS_BETTER
from sail_pipelines.evaluation import plots
from sail_pipelines.inference import explain, model
from sail_pipelines.integrity.bundle import LoadedBundle

REPEATS = 5
CONTRIBUTION_ROWS = 500


def _score(
    bundle: LoadedBundle, rows: pd.DataFrame, truth: Any, metric: str, runtime: str
) -> float:
    predictions, probabilities = model.predict(bundle, rows, runtime)
    classes = bundle.classes if bundle.metadata["task"] == "classification" else None
    return metrics.score(metric, truth, predictions, probabilities, classes)


def permutation(
    bundle: LoadedBundle, test: pd.DataFrame, metric: str, runtime: str, seed: int
) -> dict[str, dict[str, float]]:
    """Per source column: the mean loss of `metric` when it is shuffled, and its 95% interval."""
    from scipy import stats

    features = test[bundle.schema.feature_names].reset_index(drop=True)
    truth = test[bundle.schema.target.name].to_numpy()
    base = _score(bundle, features, truth, metric, runtime)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(seed)
    spread = stats.t.ppf(0.975, REPEATS - 1) / math.sqrt(REPEATS)
    out = {}
    for column in bundle.schema.feature_names:
        losses = []
        for _ in range(REPEATS):
            shuffled = features.copy()
            shuffled[column] = features[column].to_numpy()[rng.permutation(len(features))]
            losses.append(sign * (base - _score(bundle, shuffled, truth, metric, runtime)))
        mean, half = float(np.mean(losses)), float(spread * np.std(losses, ddof=1))
        out[column] = {"mean": mean, "low": mean - half, "high": mean + half}
    return out


def contributions(bundle: LoadedBundle, test: pd.DataFrame) -> dict[str, Any]:
    """Mean |contribution| per source column, or the reason there is none."""
    rows = test[bundle.schema.feature_names].head(CONTRIBUTION_ROWS)
    try:
        explained = explain.explain(bundle, rows)
    except explain.Unexplainable as exc:
        return {"reason": str(exc)}
    columns = list(explained[0]["contributions"]) if explained else []
    means = {c: float(np.mean([abs(e["contributions"][c]) for e in explained])) for c in columns}
    return {"mean_abs": means, "space": explained[0]["space"] if explained else None}


def importance(
    bundle: LoadedBundle, test: pd.DataFrame, metric: str, runtime: str, seed: int
) -> dict[str, Any]:
    """What evaluation.json records under `importance`, for the report, charts and card."""
    return {
        "candidate": bundle.metadata["name"],
        "metric": metric,
        "repeats": REPEATS,
        "permutation": permutation(bundle, test, metric, runtime, seed),
        "contributions": contributions(bundle, test),
    }


def measured(
    out: Path, params: Params, bundle: LoadedBundle, test: pd.DataFrame, runtime: dict[str, Any]
) -> tuple[dict[str, Any], Path]:
    """The winner's importance, by the runtime that will serve it, and its picture in `out`."""
    found = importance(
        bundle, test, params.gate.primary_metric, runtime["runtime"], params.split.seed
    )
    return found, plots.importance(out, found)
