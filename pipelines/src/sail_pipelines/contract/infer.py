"""Schema inference: a first contract for a data file the template has never seen.

Each column gets a type and a role with the reason, by rules a person can check in the table
`sail adopt` prints: an identifier (unique per row), free text, an empty or constant column is
ignored; ISO 8601 strings are dates; a few repeated strings are a category, capped at the
values common enough to learn from (the rest share one "other" bucket). The target decides the
task: numbers with a fraction or many distinct values mean regression, anything else
classification. The result is only a start: every decision can be edited in the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sail_pipelines.config import TASKS
from sail_pipelines.contract.schema import Column, Schema, plain
from sail_pipelines.errors import SailError

MAX_CLASSES = 20  # an integer target with more distinct values is a regression target
MIN_ID_ROWS = 20  # fewer rows than this say nothing about a column being unique per row
MAX_CATEGORIES = 30  # category values kept at most; the rest go to "other"
MIN_SHARE = 0.01  # a category value rarer than this goes to "other"
TEXT_LENGTH = 40  # strings longer than this on average are free text
ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key|index|idx)$", re.IGNORECASE)
ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class Inferred:
    schema: Schema
    task: str
    task_reason: str


def _integral(values: pd.Series) -> bool:
    return bool((values == values.round()).all())


def _strings(values: pd.Series) -> pd.Series:
    return values.map(lambda v: v if isinstance(v, str) else str(plain(v)))


def infer_task(target: pd.Series, name: str) -> tuple[str, str]:
    present = target.dropna()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    distinct = present.nunique()
    if numeric and not _integral(present):
        return "regression", "numeric target with fractional values"
    if numeric and distinct > MAX_CLASSES:
        return (
            "regression",
            f"numeric target with {distinct} distinct values (more than {MAX_CLASSES})",
        )
    kind = "binary" if distinct == 2 else f"{distinct}-class"
    return (
        "classification",
        f"{kind} target: {'numbers' if numeric else 'labels'} with {distinct} distinct values",
    )


def _target(values: pd.Series, name: str, task: str, reason: str) -> Column:
    present = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if task == "regression":
        if not numeric:
            raise SailError(
                f"target '{name}' holds labels, not numbers: it cannot be a regression target"
            )
        return Column(name, "int" if _integral(present) else "float", "target", reason=reason)
    labels = sorted({plain(v) for v in present}, key=lambda v: (str(type(v)), v))
    if len(labels) < 2:
        shown = repr(labels[0]) if labels else "none"
        raise SailError(
            f"target '{name}' has one class ({shown}): classification needs at least two"
        )
    if pd.api.types.is_bool_dtype(present) or all(isinstance(v, bool) for v in labels):
        kind = "bool"
    else:
        kind = "int" if numeric else "category"
        labels = [int(v) for v in labels] if numeric else [str(v) for v in labels]
    return Column(name, kind, "target", tuple(labels), reason=reason)


def infer_column(name: str, values: pd.Series) -> Column:
    """Type and role of one feature column, with the reason."""
    present = values.dropna()
    nullable = len(present) < len(values)
    missing = f", {len(values) - len(present)} missing" if nullable else ""

    def column(kind: str, reason: str, role: str = "feature", **extra: Any) -> Column:
        return Column(name, kind, role, nullable=nullable, reason=reason + missing, **extra)

    if present.empty:
        return column("float", "empty: no values", "ignore")
    distinct = present.nunique()
    if distinct == 1:
        return column(
            "float" if pd.api.types.is_numeric_dtype(present) else "text",
            f"constant: always {plain(present.iloc[0])!r}",
            "ignore",
        )
    unique_per_row = distinct == len(present) and len(present) >= MIN_ID_ROWS
    if pd.api.types.is_bool_dtype(present) or present.map(lambda v: isinstance(v, bool)).all():
        return column("bool", "true/false values")
    if pd.api.types.is_numeric_dtype(present):
        if _integral(present):
            consecutive = present.max() - present.min() + 1 == len(present)
            if unique_per_row and (ID_NAME.search(name) or consecutive):
                return column("int", "identifier: a different whole number on every row", "ignore")
            return column("int", f"whole numbers, {distinct} distinct")
        return column("float", f"numbers, {distinct} distinct")
    text = _strings(present)
    if text.map(lambda v: bool(ISO_DATE.match(v.strip()))).all():
        return column(
            "datetime", "ISO 8601 dates: calendar features (year, month, weekday, day of year)"
        )
    if text.str.len().mean() > TEXT_LENGTH:
        return column(
            "text", f"free text: {text.str.len().mean():.0f} characters on average", "ignore"
        )
    if unique_per_row:
        return column("text", "identifier: a different value on every row", "ignore")
    counts = text.value_counts()
    kept = counts[counts >= max(2, MIN_SHARE * len(present))].head(MAX_CATEGORIES)
    if kept.empty:
        return column(
            "text", f"no value repeats often enough to learn from ({distinct} distinct)", "ignore"
        )
    values_kept = tuple(sorted(kept.index))
    if len(kept) < distinct:
        return column(
            "category",
            f"category: {len(kept)} of {distinct} values kept (each at least {MIN_SHARE:.0%} "
            f"of rows, at most {MAX_CATEGORIES}); the rest share one 'other' bucket",
            values=values_kept,
            other=True,
        )
    return column("category", f"category with {distinct} values", values=values_kept)


def infer(frame: pd.DataFrame, target: str, task: str | None = None) -> Inferred:
    """The schema and task for a frame, or a one-line SailError saying why the file cannot train."""
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:10])) + (
            " ..." if len(frame.columns) > 10 else ""
        )
        raise SailError(f"target column '{target}' is not in the data (columns: {shown})")
    if frame[target].notna().sum() == 0:
        raise SailError(f"target column '{target}' has no values")
    if task is not None and task not in TASKS:
        raise SailError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    inferred_task, reason = infer_task(frame[target], target)
    chosen = task or inferred_task
    reason = (
        reason
        if chosen == inferred_task
        else f"{chosen} as asked (the data suggests {inferred_task}: {reason})"
    )
    label = _target(frame[target], target, chosen, reason)
    columns = [infer_column(str(name), frame[name]) for name in frame.columns if name != target]
    features = tuple(c for c in columns if c.role == "feature")
    if not features:
        set_aside = (
            "; ".join(f"{c.name}: {c.reason}" for c in columns) or "there is no other column"
        )
        raise SailError(f"no usable feature in the data: {set_aside}")
    schema = Schema(label, features, tuple(c for c in columns if c.role == "ignore"))
    return Inferred(schema, chosen, reason)


def ordered(schema: Schema, order: list[str]) -> list[Column]:
    """The schema's columns in the file's order, for the schema file and the decisions table."""
    by_name = {c.name: c for c in schema.columns}
    return [by_name[n] for n in order if n in by_name]


def decisions_table(columns: list[Column]) -> str:
    """One line per column: what was decided and why."""
    rows = [("column", "type", "role", "reason")] + [
        (c.name, c.type, c.role, c.reason or "") for c in columns
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows
    )
