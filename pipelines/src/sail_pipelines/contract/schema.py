"""The feature schema: the contract that raw data, batch files and API requests all meet.

One definition (contracts/schema.yaml) serves validation at training time and input checks
at serving time, so the two sides cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from sail_pipelines.config import yaml_problem
from sail_pipelines.errors import SailError

if TYPE_CHECKING:  # pandas only for batch files: the API and the compiled path never import it
    import pandas as pd

TYPES = ("float", "int", "category")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    values: tuple[Any, ...] | None = None  # allowed values, for categories (and class labels)
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.values is not None:
            out["values"] = list(self.values)
        if self.nullable:
            out["nullable"] = True
        return out


@dataclass(frozen=True)
class Schema:
    target: Column
    features: tuple[Column, ...]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target.to_dict(), "features": [c.to_dict() for c in self.features]}


class RecordError(ValueError):
    """One input record breaks the schema; `field` names the culprit for the 4xx body."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _column(raw: Mapping[str, Any], where: str) -> Column:
    if not isinstance(raw, Mapping) or "name" not in raw or "type" not in raw:
        raise SailError(f"schema: {where} needs 'name' and 'type'")
    if raw["type"] not in TYPES:
        raise SailError(f"schema: {where} '{raw['name']}' has type {raw['type']!r}, expected one of {', '.join(TYPES)}")
    values = raw.get("values")
    if raw["type"] == "category" and not values:
        raise SailError(f"schema: category column '{raw['name']}' needs a non-empty 'values' list")
    return Column(str(raw["name"]), raw["type"], tuple(values) if values else None, bool(raw.get("nullable", False)))


def parse_schema(raw: Any) -> Schema:
    if not isinstance(raw, Mapping) or "target" not in raw or not raw.get("features"):
        raise SailError("schema: expected 'target' and a non-empty 'features' list")
    features = tuple(_column(f, f"features[{i}]") for i, f in enumerate(raw["features"]))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise SailError("schema: feature names must be unique")
    return Schema(_column(raw["target"], "target"), features)


def load_schema(path: Path) -> Schema:
    if not path.is_file():
        raise SailError(f"no schema at {path}")
    try:
        return parse_schema(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise SailError(f"{path} is not valid YAML: {yaml_problem(exc)}") from None


def check_value(column: Column, value: Any) -> Any:
    """Return the value if it fits the column, else raise RecordError naming the column."""
    name = column.name
    if value is None:
        if column.nullable:
            return None
        raise RecordError(name, f"'{name}' must not be null")
    if column.type == "category":
        if isinstance(value, (dict, list)) or value not in column.values or isinstance(value, bool):
            raise RecordError(name, f"'{name}' must be one of {list(column.values)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(name, f"'{name}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise RecordError(name, f"'{name}' must be a finite number, got {value}")
    if column.type == "int" and float(value) != int(value):
        raise RecordError(name, f"'{name}' must be a whole number, got {value}")
    return value


def check_record(schema: Schema, record: Any) -> dict[str, Any]:
    """Validate one API record strictly: exactly the schema's features, each of the right type."""
    if not isinstance(record, dict):
        raise RecordError(None, f"each record must be a JSON object, got {type(record).__name__}")
    missing = [n for n in schema.feature_names if n not in record]
    if missing:
        raise RecordError(missing[0], f"missing field(s): {', '.join(missing)}")
    extra = sorted(set(record) - set(schema.feature_names))
    if extra:
        raise RecordError(extra[0], f"unexpected field(s): {', '.join(extra)}")
    return {c.name: check_value(c, record[c.name]) for c in schema.features}


SHOWN_VALUES = 5


def examples(series: pd.Series) -> str:
    """A few offending values with their row numbers, for messages a person can act on."""
    shown = ", ".join(f"{v!r} (row {i})" for i, v in series.head(SHOWN_VALUES).items())
    more = len(series) - SHOWN_VALUES
    return shown + (f" and {more} more" if more > 0 else "")


def column_problems(column: Column, values: pd.Series) -> list[str]:
    """Vectorized version of check_value for a whole column: one message per kind of problem."""
    import numpy as np
    import pandas as pd

    name = column.name
    problems = []
    nulls = values.isna()
    if nulls.any() and not column.nullable:
        problems.append(f"{name}: {int(nulls.sum())} null value(s) in a non-nullable column, at rows {list(values[nulls].index[:SHOWN_VALUES])}")
    present = values[~nulls]
    if column.values is not None:
        as_python = present.map(plain)
        bad = as_python[~as_python.isin(set(column.values)) | as_python.map(lambda v: isinstance(v, bool))]
        if len(bad):
            problems.append(f"{name}: value(s) outside {list(column.values)}: {examples(bad)}")
        if column.type == "category":
            return problems
    numeric = pd.to_numeric(present, errors="coerce")
    not_numbers = present[numeric.isna()]
    if len(not_numbers):
        problems.append(f"{name}: non-numeric value(s): {examples(not_numbers)}")
    finite = numeric.dropna()
    infinite = finite[~np.isfinite(finite)]
    if len(infinite):
        problems.append(f"{name}: infinite value(s): {examples(infinite)}")
    if column.type == "int":
        finite = finite[np.isfinite(finite)]
        fractional = finite[finite != np.floor(finite)]
        if len(fractional):
            problems.append(f"{name}: non-integer value(s) in an int column: {examples(fractional)}")
    return problems


def check_frame(schema: Schema, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a batch file's feature columns; extra columns are allowed and left for the caller."""
    missing = [n for n in schema.feature_names if n not in frame.columns]
    if missing:
        raise SailError(f"input is missing {len(missing)} column(s): {', '.join(missing[:SHOWN_VALUES])}{' ...' if len(missing) > SHOWN_VALUES else ''}")
    problems = [p for column in schema.features for p in column_problems(column, frame[column.name])]
    if problems:
        raise SailError("input breaks the schema: " + "; ".join(problems))
    return frame[schema.feature_names]


def plain(value: Any) -> Any:
    """numpy scalars to Python ones, so batch and API values are checked (and dumped) alike."""
    return value.item() if hasattr(value, "item") else value
