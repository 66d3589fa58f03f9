"""The training split as every window of served traffic is compared with it, prepared once:
each feature's present values (numbers and dates as floats, categories as text), its bins,
nulls and range, and the predictions the model makes on the split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sail_pipelines.config import MonitoringConfig
from sail_pipelines.contract.ranges import training_ranges
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.monitoring.stats import label, quantile_edges

NUMBERS = ("float", "int", "datetime")  # compared as numbers: dates as days since 1970
EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class Baseline:
    """What every window is compared with, computed once from the training split: each
    feature's present values (numbers and dates as floats, categories as text), its bins, nulls
    and range, and the predictions the model makes on the split."""

    rows: int
    numbers: dict[str, np.ndarray]
    edges: dict[str, np.ndarray]
    labels: dict[str, pd.Series]
    missing: dict[str, int]
    ranges: dict[str, tuple[float, float]]
    outside: dict[str, int]
    predictions: np.ndarray | pd.Series
    classification: bool


def as_numbers(column: Column, values: Any) -> np.ndarray:
    """Numbers as floats, dates as days since 1970 (UTC), so both get bins, KS and a range."""
    if column.type == "datetime":
        stamps = pd.to_datetime(
            pd.Series(values, dtype=object), utc=True, format="ISO8601", errors="coerce"
        )
        return ((stamps - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    return np.asarray(values, dtype=float)


def baseline(
    schema: Schema,
    metadata: Mapping[str, Any],
    train: pd.DataFrame,
    config: MonitoringConfig,
    predictions: Sequence[Any] | None = None,
) -> Baseline:
    """The training split prepared once; `predictions` are the model's on it (the training
    target stands in without them)."""
    ranges = training_ranges(schema, metadata)
    margin = float((metadata.get("serving") or {}).get("range_margin", 0.1))
    base = Baseline(len(train), {}, {}, {}, {}, {}, {}, np.array([]), False)
    for column in schema.features:
        if column.name not in train:
            continue
        values = train[column.name]
        base.missing[column.name] = int(values.isna().sum())
        present = values.dropna()
        if column.type in NUMBERS:
            numbers = as_numbers(column, present.to_numpy())
            numbers = numbers[np.isfinite(numbers)]
            base.numbers[column.name] = numbers
            base.edges[column.name] = quantile_edges(numbers, config.bins)
            if column.type == "datetime" and len(numbers):
                low, high = float(numbers.min()), float(numbers.max())
                ranges[column.name] = (low - margin * (high - low), high + margin * (high - low))
            if column.name in ranges:
                low, high = ranges[column.name]
                base.ranges[column.name] = (low, high)
                base.outside[column.name] = int(np.sum((numbers < low) | (numbers > high)))
        else:
            base.labels[column.name] = present.map(label)
    target = train[schema.target.name].dropna()
    classification = metadata.get("task") == "classification"
    reference = target if predictions is None else pd.Series(list(predictions)).dropna()
    return replace(
        base,
        predictions=reference.map(label) if classification else reference.to_numpy(dtype=float),
        classification=classification,
    )
