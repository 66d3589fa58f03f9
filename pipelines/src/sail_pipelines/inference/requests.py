"""From request bytes to checked feature columns, for every protocol the server speaks.

The body is parsed strictly (no duplicate keys, no NaN or Infinity), each record is checked
against the bundle's schema (`check_record`), and the checked records become plain columns
that either runtime takes. No pandas: this is the hot path of every request.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Mapping

import numpy as np

from sail_pipelines.contract.schema import EXACT_INT, RecordError, Schema, check_record


class InputError(Exception):
    """A client mistake, answered with `status` and a JSON body naming the field; never a 500."""

    def __init__(
        self, status: int, message: str, field: str | None = None, record: int | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.record = record


class NonFinite:
    """Stands in for NaN/Infinity while parsing, so the object holding it can name the field."""

    def __init__(self, literal: str):
        self.literal = literal


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Reject duplicate keys (json would keep the last one silently) and NaN/Infinity values."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RecordError(key, f"duplicate key '{key}'")
        if isinstance(value, NonFinite):
            raise RecordError(
                key, f"'{key}' is {value.literal}, which is not valid JSON; send a finite number"
            )
        obj[key] = value
    return obj


def _parse_int(text: str) -> int | float:
    """Integers beyond float range become ±inf, as 1e999 does: the schema rejects them by field."""
    value = int(text)
    return value if abs(value) <= sys.float_info.max else float(text)


def parse_json(data: bytes) -> Any:
    if not data:
        raise InputError(400, "request body is empty; send a JSON object or an array of objects")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(400, "request body is not valid UTF-8") from exc
    try:
        return json.loads(
            text, object_pairs_hook=_strict_object, parse_constant=NonFinite, parse_int=_parse_int
        )
    except RecordError as exc:
        raise InputError(400, exc.message, exc.field) from exc
    except RecursionError as exc:
        raise InputError(400, "JSON is nested too deeply") from exc
    except ValueError as exc:
        raise InputError(400, f"malformed JSON: {exc}") from exc


def checked_columns(
    schema: Schema, payload: Any, max_records: int, where: str = ""
) -> dict[str, list[Any]]:
    """The request's records as one checked list of values per feature. A batch whose every
    value plainly fits (the usual case) is checked column by column at C speed; anything else
    goes record by record through `check_record`, which names the record and the field."""
    if isinstance(payload, list) and 0 < len(payload) <= max_records:
        columns = _plainly_valid(schema, payload)
        if columns is not None:
            return columns
    return records_to_columns(schema, check_records(schema, payload, max_records, where))


def _plainly_valid(schema: Schema, records: list[Any]) -> dict[str, list[Any]] | None:
    """Columns when every record has the features (and at most the target and ignored columns
    besides) and every value is one that check_value accepts without a doubt; None sends the
    batch to the per-record check."""
    names, dropped = set(schema.feature_names), set(schema.dropped)
    for r in records:
        if type(r) is not dict:
            return None
        if r.keys() != names:  # a whole row: the target and ignored columns, single values
            extra = r.keys() - names
            if not names <= r.keys() or not extra <= dropped:
                return None
            if any(isinstance(r[k], (dict, list)) for k in extra):
                return None
    columns = {}
    for column in schema.features:
        values = [r[column.name] for r in records]
        kinds = set(map(type, values))
        if column.type in ("float", "int") and kinds <= {float, int}:
            numbers = np.array(values, dtype=np.float64)
            if not np.isfinite(numbers).all():
                return None
            if column.type == "int" and not (
                (numbers == np.floor(numbers)).all() and (np.abs(numbers) < EXACT_INT).all()
            ):
                return None
        elif column.type == "category" and bool not in kinds:
            try:
                if not set(values) <= set(column.values or ()):
                    return None
            except TypeError:  # an unhashable value (object, array): let check_value name it
                return None
        else:  # null, another type: the per-record check decides
            return None
        columns[column.name] = values
    return columns


def check_records(
    schema: Schema, payload: Any, max_records: int, where: str = ""
) -> list[dict[str, Any]]:
    """One object is one record, an array is many; either way every record must meet the schema.
    `where` names the part of the body the records came from (e.g. 'dataframe_records')."""
    if isinstance(payload, dict):
        try:
            return [check_record(schema, payload)]
        except RecordError as exc:
            raise InputError(422, exc.message, exc.field) from exc
    label = where or "request body"
    if not isinstance(payload, list):
        raise InputError(
            422,
            f"{label} must be a JSON object (one record) or an array of objects (many)",
            where or None,
        )
    if not payload:
        raise InputError(422, f"{label}: the array of records is empty", where or None)
    if len(payload) > max_records:
        raise InputError(413, f"{len(payload)} records in one request; the limit is {max_records}")
    records = []
    for i, record in enumerate(payload):
        if not isinstance(record, dict):
            raise InputError(
                422, f"record {i}: each record must be a JSON object", where or None, record=i
            )
        for key, value in record.items():  # NaN inside an array (as a tensor's data) reaches here
            if isinstance(value, NonFinite):
                raise InputError(
                    400,
                    f"record {i}: '{key}' is {value.literal}, which is not valid JSON; "
                    "send a finite number",
                    key,
                    record=i,
                )
        try:
            records.append(check_record(schema, record))
        except RecordError as exc:
            raise InputError(422, f"record {i}: {exc.message}", exc.field, record=i) from exc
    return records


def records_to_columns(schema: Schema, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Checked records as one list of values per feature, what both runtimes take."""
    return {name: [record[name] for record in records] for name in schema.feature_names}


WARM_UP = {"bool": False, "datetime": "2000-01-01", "text": "", "float": 0.0, "int": 0}


def warm_up_record(schema: Schema, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A row like the training data: numbers at their training mean (0 is not in every STL's
    domain)."""
    profile = (metadata.get("training_profile") or {}).get("columns", {})

    def typical(column: Any) -> Any:
        mean = profile.get(column.name, {}).get("mean")
        if (
            column.type in ("float", "int")
            and isinstance(mean, (int, float))
            and math.isfinite(mean)
        ):
            return round(mean) if column.type == "int" else mean
        return column.values[0] if column.type == "category" else WARM_UP[column.type]

    return {c.name: typical(c) for c in schema.features}


def check_outputs(
    predictions: np.ndarray, probabilities: np.ndarray | None, strays: list[Any]
) -> None:
    """A model may overflow on finite but far-out inputs (1e38 through a linear model): NaN is no
    answer, nor valid JSON, so the record is refused, naming its first value beyond the training
    range."""
    for scores in (predictions, probabilities):
        if scores is None or scores.dtype.kind != "f":
            continue  # class labels
        bad = np.flatnonzero(~np.isfinite(scores.reshape(len(scores), -1)).all(axis=1))
        if bad.size:
            _refuse(int(bad[0]), len(scores), "the model's answer", strays)


def check_explanations(explanations: list[dict[str, Any]], strays: list[Any]) -> None:
    """An explanation overflows sooner than the answer it explains (log-odds of 1e300 still give a
    probability of 1): refused as an answer that is not a finite number is, naming the column
    whose contribution overflowed."""
    for row, item in enumerate(explanations):
        numbers = [*item["contributions"].values(), item["base_value"], item["output"]]
        if not all(math.isfinite(x) for x in numbers):
            column = next(
                (c for c, x in item["contributions"].items() if not math.isfinite(x)), None
            )
            _refuse(row, len(explanations), "the explanation", strays, column)


def _refuse(row: int, rows: int, what: str, strays: list[Any], field: str | None = None) -> None:
    field = field or next((s.field for s in strays if s.record == row), None)
    record = row if rows > 1 else None
    where = f"record {row}: " if record is not None else ""
    raise InputError(
        422,
        f"{where}{what} is not a finite number; send values nearer the training range",
        field,
        record,
    )
