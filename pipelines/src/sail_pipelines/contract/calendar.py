"""Calendar features of dates: the numbers a model gets from a datetime column.

The STL's `CalendarFeatures` and the compiled path's request decoder both call `calendar()`, so a
date becomes the same numbers at training, in batch and in a request, by construction. Plain
Python and numpy: serving with ONNX Runtime imports neither pandas nor scikit-learn. A date is
what the contract accepts (`schema.parse_datetime`, ISO 8601); times are compared in UTC (a
time without an offset is taken as UTC); a missing or unreadable value gives NaN, for the imputer
that follows.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable

import numpy as np

from sail_pipelines.contract.schema import parse_datetime

PARTS = ("year", "month", "dayofweek", "dayofyear")  # then "hour", when training had times


def parse_utc(value: Any) -> datetime | None:
    """The value as a naive UTC datetime, or None when it is missing or not a date. Non-strings
    are read as their text, as the contract checks them (a Parquet timestamp, a date)."""
    if value is None or value != value:  # None, NaN, NaT
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    else:
        try:
            stamp = parse_datetime(value if isinstance(value, str) else str(value))
        except ValueError:
            return None
    if stamp.tzinfo is None:
        return stamp
    try:
        return stamp.astimezone(timezone.utc).replace(tzinfo=None)
    except (OverflowError, ValueError):  # an offset pushes it past year 1 or 9999
        return None


def _parts(stamp: datetime | None, hour: bool) -> tuple[float, ...]:
    if stamp is None:
        return (np.nan,) * (len(PARTS) + hour)
    parts = (stamp.year, stamp.month, stamp.weekday(), stamp.timetuple().tm_yday)
    return parts + (stamp.hour,) if hour else parts


def calendar(values: Iterable[Any], hour: bool) -> np.ndarray:
    """[rows, 4] float64 of year, month, day of week (Monday 0) and day of year, [rows, 5] with
    the hour: NaN across a row whose value is missing or not a date."""
    width = len(PARTS) + hour
    seen: dict[str, tuple[float, ...]] = {}  # a batch repeats its dates: parse each once
    rows = []
    for value in values:
        if isinstance(value, str):
            parts = seen.get(value)
            if parts is None:
                parts = seen[value] = _parts(parse_utc(value), hour)
        else:
            parts = _parts(parse_utc(value), hour)
        rows.append(parts)
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def has_times(values: Iterable[Any]) -> bool:
    """Whether any date has an hour other than 0 (in UTC): the hour is a feature only then."""
    return any((stamp := parse_utc(v)) is not None and stamp.hour != 0 for v in values)
