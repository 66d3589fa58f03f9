"""Training ranges: how far a served value may stray from what the model learned on.

A value the model never saw anything like is valid input (the schema accepts it), so serving
flags it in the answer or refuses it with a 422, as params.yaml's serving.out_of_range says:

- a number or a date outside the training split's min and max, widened by
  validation.range_margin of their span (as `sail validate` widens it for new data);
- a category value the training split does not hold: one accepted only through the `other`
  bucket, or one the schema lists that training never had (the model learned nothing of it).

Dates are compared as instants, a time without a zone as UTC (as the STL reads it); when
training held dates without times, the widened range is rounded out to whole days. Training
writes what this needs into the bundle's training profile (`with_limits`); a bundle made before
has no date or category limits, and only its numbers are judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from sail_pipelines.contract.schema import Column, Schema, parse_datetime, plain

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FIRST = (datetime(1, 1, 1, tzinfo=timezone.utc) - EPOCH).total_seconds()
LAST = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - EPOCH).total_seconds()
DAY = 86400.0


@dataclass(frozen=True)
class Beyond:
    """One served value outside the training limits; `range` is None for an unseen category."""

    record: int
    field: str
    value: Any
    range: tuple[Any, Any] | None

    def message(self) -> str:
        if self.range is None:
            return (
                f"'{self.field}' = {self.value!r} was never seen in training "
                "(serving.out_of_range: refuse)"
            )
        low, high = (_shown(v) for v in self.range)
        return (
            f"'{self.field}' = {_shown(self.value)} is outside the training range "
            f"[{low}, {high}] (serving.out_of_range: refuse)"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"record": self.record, "field": self.field, "value": self.value}
        if self.range is None:
            out["unseen"] = True
        else:
            out["range"] = list(self.range)
        return out


@dataclass(frozen=True)
class Limits:
    """Per feature: numbers' and dates' widened ranges (dates in seconds since 1970, UTC), and
    the category values training saw."""

    numbers: Mapping[str, tuple[float, float]]
    dates: Mapping[str, tuple[float, float]]
    seen: Mapping[str, frozenset[Any]]


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def seconds(value: Any) -> float:
    """A date or time (ISO 8601 text, or a timestamp read from a file) as seconds since 1970."""
    moment = parse_datetime(value if isinstance(value, str) else str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH).total_seconds()


def iso(at: float) -> str:
    """Seconds since 1970 as ISO 8601 (a date alone at midnight), within the years 1 to 9999."""
    moment = EPOCH + timedelta(seconds=round(min(max(at, FIRST), LAST)))
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat()


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _seen(column: Column, present: Sequence[Any]) -> list[Any]:
    """The values training held: the schema's in its order, then the `other` ones."""
    held = set(present)
    listed = [v for v in column.values or () if v in held]
    others = held - set(column.values or ())
    return listed + sorted(others, key=lambda v: (type(v).__name__, str(v)))


def with_limits(schema: Schema, frame: Any, profile: dict[str, Any]) -> dict[str, Any]:
    """The training profile plus what the out-of-range check needs beyond numbers: each date
    feature's earliest and latest value (`min`, `max`, as written) and each category feature's
    values held (`seen`). `frame` is the training split (pandas)."""
    for column in schema.features:
        if column.type not in ("datetime", "category"):
            continue
        present = [plain(v) for v in frame[column.name].tolist() if _present(plain(v))]
        stats = profile["columns"].setdefault(column.name, {})
        if column.type == "category":
            stats["seen"] = _seen(column, present)
        elif present:
            stats.update(min=min(present, key=seconds), max=max(present, key=seconds))
    return profile


def training_ranges(schema: Schema, metadata: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Per numeric feature, the widened training range from a bundle's metadata."""
    profile = (metadata.get("training_profile") or {}).get("columns", {})
    margin = _margin(metadata)
    ranges = {}
    for column in schema.features:
        stats = profile.get(column.name, {})
        if column.type in ("float", "int") and isinstance(stats.get("min"), (int, float)):
            ranges[column.name] = _widened(float(stats["min"]), float(stats["max"]), margin)
    return ranges


def training_limits(schema: Schema, metadata: Mapping[str, Any]) -> Limits:
    """Every limit a bundle's metadata holds: numbers, dates and categories."""
    profile = (metadata.get("training_profile") or {}).get("columns", {})
    margin = _margin(metadata)
    dates, seen = {}, {}
    for column in schema.features:
        stats = profile.get(column.name, {})
        if column.type == "datetime" and isinstance(stats.get("min"), str):
            low, high = _widened(seconds(stats["min"]), seconds(stats["max"]), margin)
            if len(stats["min"]) == len(stats["max"]) == len("2000-01-01"):  # dates, no times
                low, high = math.floor(low / DAY) * DAY, math.ceil(high / DAY) * DAY
            dates[column.name] = (low, high)
        elif column.type == "category" and isinstance(stats.get("seen"), list):
            seen[column.name] = frozenset(stats["seen"])
    return Limits(training_ranges(schema, metadata), dates, seen)


def refuses(metadata: Mapping[str, Any]) -> bool:
    """Whether a bundle refuses values beyond its limits (serving.out_of_range: refuse)."""
    return (metadata.get("serving") or {}).get("out_of_range") == "refuse"


def _margin(metadata: Mapping[str, Any]) -> float:
    return float((metadata.get("serving") or {}).get("range_margin", 0.1))


def _widened(low: float, high: float, margin: float) -> tuple[float, float]:
    span = high - low if math.isfinite(high - low) else 0.0
    return low - margin * span, high + margin * span


def beyond(columns: Mapping[str, Sequence[Any]], limits: Limits) -> list[Beyond]:
    """Every value (one sequence per feature: a request's checked columns, or a batch's, with
    None or NaN for missing) outside its training limits, in record order."""
    found = []
    for name, (low, high) in limits.numbers.items():
        values = np.asarray(columns.get(name, ()), dtype=float)
        with np.errstate(invalid="ignore"):
            for at in np.flatnonzero((values < low) | (values > high)):
                found.append(Beyond(int(at), name, float(values[at]), (low, high)))
    for name, (low, high) in limits.dates.items():
        shown = (iso(low), iso(high))
        for i, value in enumerate(columns.get(name, ())):
            if _present(value) and not low <= seconds(value) <= high:
                found.append(Beyond(i, name, str(value), shown))
    for name, seen in limits.seen.items():
        for i, value in enumerate(columns.get(name, ())):
            if _present(value) and plain(value) not in seen:
                found.append(Beyond(i, name, plain(value), None))
    return sorted(found, key=lambda b: b.record)
