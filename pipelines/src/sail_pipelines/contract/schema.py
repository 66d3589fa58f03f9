"""The feature schema: the contract that raw data, batch files and API requests all meet.

One definition (contracts/schema.yaml) serves validation at training time and input checks
at serving time, so the two sides cannot drift apart. Every column of the data has a type and
a role: the `target`, a `feature` the model sees, or `ignore` (kept out of the model: an
identifier, free text, a constant; the API accepts and drops it, batch output passes it
through so rows can be joined back). The target, too, may come along in a request and is
dropped, so a client can send whole rows as `sail predict` reads whole files. `sail adopt`
infers it all from a data file and says why in each column's `reason`; any decision can be
edited here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from sail_pipelines.config import yaml_problem
from sail_pipelines.errors import SailError

if TYPE_CHECKING:  # pandas only for batch files: the API and the compiled path never import it
    import pandas as pd

TYPES = ("float", "int", "bool", "category", "datetime", "text")
ROLES = ("feature", "target", "ignore")
NUMERIC = ("float", "int", "bool")  # what the STL gets as numbers (bool as 0/1)
EXACT_INT = 2**53  # larger whole numbers are not all exact as floats: an int column refuses them


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    role: str = "feature"
    values: tuple[Any, ...] | None = None  # allowed values, for categories (and class labels)
    nullable: bool = False
    other: bool = False  # a category whose rare or unseen values share one "other" bucket
    log: bool = True  # false keeps the value out of prediction logs (personal data)
    reason: str | None = None  # why `sail adopt` chose this type and role

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "role": self.role}
        if self.values is not None:
            out["values"] = list(self.values)
        for flag, default in (("nullable", False), ("other", False), ("log", True)):
            if getattr(self, flag) != default:
                out[flag] = getattr(self, flag)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Schema:
    target: Column
    features: tuple[Column, ...]
    ignored: tuple[Column, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*self.features, self.target, *self.ignored)

    @property
    def dropped(self) -> tuple[str, ...]:
        """Columns a request may carry that the model does not take: the target and ignored."""
        return (self.target.name, *(c.name for c in self.ignored))

    def names(self, *types: str) -> list[str]:
        return [c.name for c in self.features if c.type in types]

    def to_dict(self) -> dict[str, Any]:
        """Each column with the role its place in the schema gives it."""
        placed = [(c, "feature") for c in self.features] + [(self.target, "target")]
        return {
            "columns": [
                {**c.to_dict(), "role": role}
                for c, role in placed + [(c, "ignore") for c in self.ignored]
            ]
        }

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns in the dtypes the STL expects, however the rows were read:
        numbers and booleans as floats, categories and dates as objects, missing values as NaN."""
        import numpy as np
        import pandas as pd

        out = frame[self.feature_names].copy()
        for column in self.features:
            values = out[column.name]
            if column.type in NUMERIC:
                out[column.name] = (
                    values.map(_bool_number) if column.type == "bool" else pd.to_numeric(values)
                ).astype(float)
            else:  # missing as NaN, which imputers recognise in object columns (None they do not)
                out[column.name] = values.astype(object).where(values.notna(), np.nan)
        return out


class RecordError(ValueError):
    """One input record breaks the schema; `field` names the culprit for the 4xx body."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _column(raw: Mapping[str, Any], where: str, role: str | None = None) -> Column:
    if not isinstance(raw, Mapping) or "name" not in raw or "type" not in raw:
        raise SailError(f"schema: {where} needs 'name' and 'type'")
    name, kind, role = str(raw["name"]), raw["type"], role or raw.get("role", "feature")
    if kind not in TYPES:
        raise SailError(
            f"schema: {where} '{name}' has type {kind!r}, expected one of {', '.join(TYPES)}"
        )
    if role not in ROLES:
        raise SailError(
            f"schema: {where} '{name}' has role {role!r}, expected one of {', '.join(ROLES)}"
        )
    values = raw.get("values")
    if kind == "category" and role != "ignore" and not values:
        raise SailError(f"schema: category column '{name}' needs a non-empty 'values' list")
    if values is not None and (
        not isinstance(values, list) or len(set(map(repr, values))) != len(values)
    ):
        raise SailError(f"schema: 'values' of '{name}' must be a list without repeats")
    if kind == "text" and role == "feature":
        raise SailError(
            f"schema: text column '{name}' cannot be a feature (the STL has no text step): "
            "set role: ignore, or type: category if it holds a few repeated values"
        )
    return Column(
        name,
        kind,
        role,
        tuple(values) if values else None,
        bool(raw.get("nullable", False)),
        bool(raw.get("other", False)),
        bool(raw.get("log", True)),
        raw.get("reason"),
    )


def parse_schema(raw: Any) -> Schema:
    """Read `columns:` (each with a role), or the older `target:` + `features:` form."""
    if isinstance(raw, Mapping) and isinstance(raw.get("columns"), list):
        columns = [_column(c, f"columns[{i}]") for i, c in enumerate(raw["columns"])]
    elif isinstance(raw, Mapping) and "target" in raw and raw.get("features"):
        columns = [_column(raw["target"], "target", "target")]
        columns += [_column(f, f"features[{i}]") for i, f in enumerate(raw["features"])]
    else:
        raise SailError(
            "schema: expected a 'columns' list (each column with a name, type and role)"
        )
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise SailError(
            "schema: column names must be unique, "
            f"{sorted({n for n in names if names.count(n) > 1})} repeat"
        )
    targets = [c for c in columns if c.role == "target"]
    if len(targets) != 1:
        raise SailError(f"schema: exactly one column needs role: target, found {len(targets)}")
    features = tuple(c for c in columns if c.role == "feature")
    if not features:
        raise SailError("schema: no column has role: feature, so the model would have no input")
    if targets[0].type in ("datetime", "text"):
        raise SailError(
            f"schema: the target '{targets[0].name}' cannot be of type {targets[0].type}"
        )
    return Schema(targets[0], features, tuple(c for c in columns if c.role == "ignore"))


def load_schema(path: Path) -> Schema:
    if not path.is_file():
        raise SailError(f"no schema at {path}")
    try:
        return parse_schema(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise SailError(f"{path} is not valid YAML: {yaml_problem(exc)}") from exc


def _bool_number(value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return float(parse_bool(value))


BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def parse_bool(value: Any) -> bool:
    """True/False as JSON gives them, or as a CSV spells them (true/false, yes/no, 1/0)."""
    value = plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOL_TEXT:
        return BOOL_TEXT[value.strip().lower()]
    raise ValueError(value)


def parse_datetime(value: Any) -> datetime:
    """ISO 8601, as JSON clients and CSV files write dates (2024-05-01, 2024-05-01T13:45:00Z)."""
    if not isinstance(value, str):
        raise ValueError(value)
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))


def check_value(column: Column, value: Any) -> Any:
    """Return the value if it fits the column, else raise RecordError naming the column."""
    name = column.name
    if value is None:
        if column.nullable:
            return None
        raise RecordError(name, f"'{name}' must not be null")
    if column.type == "category":
        values = column.values or ()  # a category column always lists its values
        if isinstance(value, (dict, list, bool)) or (value not in values and not column.other):
            raise RecordError(name, f"'{name}' must be one of {list(values)}, got {value!r}")
        kind = str if all(isinstance(v, str) for v in values) else (int, float)
        if not isinstance(value, kind) or (isinstance(value, float) and not math.isfinite(value)):
            expected = "a string" if kind is str else "a finite number"
            raise RecordError(
                name,
                f"'{name}' must be {expected} (one of {list(values)} or another), got {value!r}",
            )
        return value
    if column.type == "bool":
        if not isinstance(value, bool):
            raise RecordError(name, f"'{name}' must be true or false, got {value!r}")
        return value
    if column.type in ("datetime", "text"):
        if not isinstance(value, str):
            raise RecordError(name, f"'{name}' must be a string, got {type(value).__name__}")
        if column.type == "datetime":
            try:
                parse_datetime(value)
            except ValueError as exc:
                raise RecordError(
                    name, f"'{name}' must be an ISO 8601 date or time, got {value[:40]!r}"
                ) from exc
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(name, f"'{name}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise RecordError(name, f"'{name}' must be a finite number, got {value}")
    if column.type == "int" and float(value) != int(value):
        raise RecordError(name, f"'{name}' must be a whole number, got {value}")
    if column.type == "int" and abs(value) > EXACT_INT:
        raise RecordError(
            name,
            f"'{name}' must be a whole number from -2^53 to 2^53 (exact as a float), got {value}",
        )
    return value


def check_record(schema: Schema, record: Any) -> dict[str, Any]:
    """Validate one API record strictly: every feature of the right type, nothing unknown.
    The target and ignored columns may come along (clients send whole rows, as `sail predict`
    reads whole files); they are checked loosely (one value each) and dropped."""
    if not isinstance(record, dict):
        raise RecordError(None, f"each record must be a JSON object, got {type(record).__name__}")
    missing = [n for n in schema.feature_names if n not in record]
    if missing:
        raise RecordError(missing[0], f"missing field(s): {', '.join(missing)}")
    extra = sorted(set(record) - {*schema.feature_names, *schema.dropped})
    if extra:
        raise RecordError(extra[0], f"unexpected field(s): {', '.join(extra)}")
    check_dropped(schema, record)
    return {c.name: check_value(c, record[c.name]) for c in schema.features}


def check_dropped(schema: Schema, record: Mapping[str, Any]) -> None:
    """The target and ignored columns a record brings must be single values (any kind)."""
    for name in schema.dropped:
        if isinstance(record.get(name), (dict, list)):
            raise RecordError(name, f"'{name}' must be a single value")


SHOWN_VALUES = 5


def where(index: Any, series: pd.Series) -> str:
    """'line N' for rows read from a CSV file (the index holds file lines), else 'row N'."""
    return f"{series.index.name or 'row'} {index}"


def examples(series: pd.Series) -> str:
    """A few offending values with their line numbers, for messages a person can act on."""
    shown = ", ".join(f"{v!r} ({where(i, series)})" for i, v in series.head(SHOWN_VALUES).items())
    more = len(series) - SHOWN_VALUES
    return shown + (f" and {more} more" if more > 0 else "")


def _unparsed(present: pd.Series, parse: Any) -> pd.Series:
    def bad(value: Any) -> bool:
        try:
            parse(value)
        except (ValueError, TypeError):
            return True
        return False

    return present[present.map(bad)]


def column_problems(column: Column, values: pd.Series) -> list[str]:
    """Vectorized version of check_value for a whole column: one message per kind of problem."""
    import numpy as np
    import pandas as pd

    name = column.name
    problems = []
    nulls = values.isna()
    if nulls.any() and not column.nullable:
        lines = ", ".join(where(i, values) for i in values[nulls].index[:SHOWN_VALUES])
        problems.append(
            f"{name}: {int(nulls.sum())} null value(s) in a non-nullable column, at {lines}"
        )
    present = values[~nulls]
    if column.type == "text":
        return problems
    if column.type in ("bool", "datetime"):
        bad = _unparsed(
            present, parse_bool if column.type == "bool" else lambda v: parse_datetime(str(v))
        )
        if len(bad):
            expected = "true/false" if column.type == "bool" else "ISO 8601 dates"
            problems.append(f"{name}: value(s) that are not {expected}: {examples(bad)}")
        return problems
    if column.values is not None and not column.other:
        as_python = present.map(plain)
        bad = as_python[
            ~as_python.isin(set(column.values)) | as_python.map(lambda v: isinstance(v, bool))
        ]
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
            problems.append(
                f"{name}: non-integer value(s) in an int column: {examples(fractional)}"
            )
    return problems


def check_frame(schema: Schema, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a batch file's feature columns; extra columns are allowed and left for the
    caller."""
    missing = [n for n in schema.feature_names if n not in frame.columns]
    if missing:
        shown = ", ".join(missing[:SHOWN_VALUES]) + (" ..." if len(missing) > SHOWN_VALUES else "")
        raise SailError(f"input is missing {len(missing)} column(s): {shown}")
    problems = [
        p for column in schema.features for p in column_problems(column, frame[column.name])
    ]
    if problems:
        raise SailError("input breaks the schema: " + "; ".join(problems))
    return frame[schema.feature_names]


def plain(value: Any) -> Any:
    """numpy scalars to Python ones, so batch and API values are checked (and dumped) alike."""
    return value.item() if hasattr(value, "item") else value
