"""Training ranges: how far a served value may stray from what the model learned on.

A value far outside the training range is valid input (the schema accepts any finite number) but
the model never saw anything like it, so serving flags it in the answer or refuses it with a 422,
as params.yaml's serving.out_of_range says. The range is the training split's min and max, widened
by validation.range_margin of their span, as `sail validate` widens it for new data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sail_pipelines.contract.schema import Schema


@dataclass(frozen=True)
class Beyond:
    record: int
    field: str
    value: float
    low: float
    high: float

    def message(self) -> str:
        return (
            f"'{self.field}' = {self.value:g} is outside the training range "
            f"[{self.low:g}, {self.high:g}] (serving.out_of_range: refuse)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "field": self.field,
            "value": self.value,
            "range": [self.low, self.high],
        }


def training_ranges(schema: Schema, metadata: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Per numeric feature, the widened training range from a bundle's metadata."""
    profile = (metadata.get("training_profile") or {}).get("columns", {})
    margin = float((metadata.get("serving") or {}).get("range_margin", 0.1))
    ranges = {}
    for column in schema.features:
        stats = profile.get(column.name, {})
        if column.type in ("float", "int") and isinstance(stats.get("min"), (int, float)):
            low, high = float(stats["min"]), float(stats["max"])
            span = high - low if math.isfinite(high - low) else 0.0
            ranges[column.name] = (low - margin * span, high + margin * span)
    return ranges


def beyond(
    columns: Mapping[str, Sequence[Any]], ranges: Mapping[str, tuple[float, float]]
) -> list[Beyond]:
    """Every checked value (one list per feature, as a request's) outside its range, in record
    order."""
    found = []
    for name, (low, high) in ranges.items():
        for i, value in enumerate(columns.get(name, ())):
            if value is not None and not low <= value <= high:
                found.append(Beyond(i, name, float(value), low, high))
    return sorted(found, key=lambda b: b.record)


def beyond_frame(frame: Any, ranges: Mapping[str, tuple[float, float]]) -> list[Beyond]:
    """`beyond` for a whole prepared batch at once (positions, not labels, as `record`)."""
    import numpy as np

    found = []
    for name, (low, high) in ranges.items():
        values = frame[name].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            for i in np.flatnonzero((values < low) | (values > high)):
                found.append(Beyond(int(i), name, float(values[i]), low, high))
    return sorted(found, key=lambda b: b.record)
