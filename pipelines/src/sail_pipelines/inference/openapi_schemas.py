"""The component schemas of the OpenAPI document (openapi.py): a record as the server checks it,
feature by feature from the bundle's schema and training profile, a prediction, an error body
and a v2 tensor. Pure functions of plain data."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from sail_pipelines.contract.ranges import iso, refuses, training_limits
from sail_pipelines.contract.schema import EXACT_INT, Column, Schema
from sail_pipelines.inference import protocols

# ISO 8601 as datetime.fromisoformat reads it (dates, times to microseconds, Z or an offset)
ISO_DATE = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$"
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any], column: Column) -> dict[str, Any]:
    if not column.nullable:
        return schema
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


def feature_schema(
    column: Column, stats: Mapping[str, Any], allowed: tuple[float, float] | None, refuse: bool
) -> dict[str, Any]:
    """One feature as the server checks it. Numbers and dates outside the training range, and
    categories training never saw, are flagged in the answer, or refused when the bundle says so
    (then the range, and the values seen, are hard limits). `allowed`: the widened range
    (dates in seconds since 1970)."""
    kind = column.type
    if kind == "category" and refuse and isinstance(stats.get("seen"), list):
        return _nullable({"enum": list(stats["seen"])}, column)
    if kind == "float":
        schema: dict[str, Any] = {"type": "number"}
    elif kind == "int":
        schema = {"type": "integer", "minimum": -EXACT_INT, "maximum": EXACT_INT}
    elif kind == "bool":
        schema = {"type": "boolean"}
    elif kind == "datetime":
        schema = {
            "type": "string",
            "pattern": ISO_DATE,
            "description": "ISO 8601 date or date-time",
        }
        if allowed:  # a bundle that records the dates training held
            schema["x-training-range"] = [stats["min"], stats["max"]]
            schema["description"] += f"; training range [{stats['min']}, {stats['max']}]"
            if refuse:
                schema["description"] += f"; refused outside [{iso(allowed[0])}, {iso(allowed[1])}]"
    elif column.other:  # unseen values share the "other" bucket: any value of the same kind
        strings = all(isinstance(v, str) for v in column.values or ())
        schema = {"type": "string" if strings else "number", "examples": list(column.values or ())}
    else:
        schema = {"enum": list(column.values or ())}
    stats = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if kind in ("float", "int") and {"min", "max"} <= set(stats):  # not for a column of nulls only
        low, high = stats["min"], stats["max"]
        schema["x-training-range"] = [low, high]
        schema["description"] = f"training range [{low:g}, {high:g}]"
        if refuse and allowed:
            schema["minimum"], schema["maximum"] = allowed
            schema["description"] += f"; refused outside [{allowed[0]:g}, {allowed[1]:g}]"
        for stat in ("mean", "std"):
            if stat in stats:
                schema[f"x-training-{stat}"] = stats[stat]
    return _nullable(schema, column)


def _record(
    schema: Schema, metadata: Mapping[str, Any], example: Mapping[str, Any]
) -> dict[str, Any]:
    profile = (metadata.get("training_profile") or {}).get("columns", {})
    limits = training_limits(schema, metadata)
    refuse = refuses(metadata)
    properties = {
        c.name: feature_schema(
            c,
            profile.get(c.name) or {},
            limits.dates.get(c.name) or limits.numbers.get(c.name),
            refuse,
        )
        for c in schema.features
    }
    for name in schema.dropped:  # clients may send whole rows: the target and ignored columns
        properties[name] = {
            "not": {"type": ["object", "array"]},
            "description": "not a feature: accepted and dropped (one value)",
        }
    return {
        "type": "object",
        "description": "one record: every feature; the target and ignored columns may come "
        "along (a whole row) and are dropped; nothing unknown",
        "properties": properties,
        "required": schema.feature_names,
        "additionalProperties": False,
        "examples": [dict(example)],
    }


def label_schema(task: str, classes: Sequence[Any]) -> dict[str, Any]:
    return {"enum": list(classes)} if task == "classification" and classes else {"type": "number"}


def _error() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "field", "request_id"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong, for a person to read"},
            "field": {"type": ["string", "null"], "description": "the field at fault, when one is"},
            "request_id": {"type": "string"},
            "record": {"type": "integer", "description": "the position of the record at fault"},
            "error_code": {"type": "string", "description": "(/invocations) MLflow's code"},
            "message": {"type": "string", "description": "(/invocations) MLflow's message"},
        },
    }


def _out_of_range() -> dict[str, Any]:
    return {
        "type": "array",
        "description": "values outside the training range (numbers, dates) or never "
        "seen in training (categories), flagged (not refused)",
        "items": {
            "type": "object",
            "required": ["record", "field", "value"],
            "properties": {
                "record": {"type": "integer"},
                "field": {"type": "string"},
                "value": {"type": ["number", "string"]},
                "range": {
                    "type": "array",
                    "items": {"type": ["number", "string"]},
                    "description": "the widened training range",
                },
                "unseen": {
                    "const": True,
                    "description": "a category value training never held",
                },
            },
        },
    }


def _explanations(features: Sequence[str]) -> dict[str, Any]:
    """`?explain=true`'s field (inference/explain.py says how each is computed)."""
    number = {"type": "number"}
    return {
        "type": "array",
        "description": "(with ?explain=true) per record: base_value + the contributions = output",
        "items": {
            "type": "object",
            "required": ["contributions", "base_value", "output", "space", "method"],
            "properties": {
                "contributions": {
                    "type": "object",
                    "description": "per source column (a category's one-hot group and a date's "
                    "calendar features summed): how far it moved the output from the base value",
                    "properties": {name: number for name in features},
                    "additionalProperties": number,
                },
                "base_value": {**number, "description": "the output on average"},
                "output": {**number, "description": "the model's output for this record"},
                "space": {
                    "enum": ["probability", "log-odds", "value"],
                    "description": "what the output is: the class's probability (forests), its "
                    "log-odds (linear models, gradient boosting) or the predicted value",
                },
                "method": {"enum": ["linear", "tree"]},
                "class": {"description": "the class explained (classification)"},
            },
        },
    }


def _prediction(task: str, classes: Sequence[Any], features: Sequence[str] = ()) -> dict[str, Any]:
    label = label_schema(task, classes)
    return {
        "type": "object",
        "required": ["request_id", "model_version", "bundle_id", "predictions"],
        "properties": {
            "request_id": {"type": "string"},
            "model_version": {"type": ["string", "null"]},
            "bundle_id": {"type": "string"},
            "predictions": {"type": "array", "items": label, "description": "one per record"},
            "probabilities": {
                "type": "array",
                "description": "per record, each class's probability",
                "items": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "properties": {str(c): {"type": "number"} for c in classes},
                },
            },
            "out_of_range": _out_of_range(),
            "explanations": _explanations(features),
            # the outlier detector's answer (bundles trained with one): inference/outliers.py
            "outlier_score": {
                "type": "array",
                "items": {"type": "number"},
                "description": "per record, the outlier detector's score (higher: less like the "
                "training split); above the threshold in /metadata's `outliers` is an outlier",
            },
            "outlier": {
                "type": "array",
                "items": {"type": "boolean"},
                "description": "per record, whether its outlier score is above the threshold "
                "(serving.outliers: flag; with refuse such a request is answered 422)",
            },
        },
    }


def components(
    schema: Schema,
    metadata: Mapping[str, Any],
    task: str,
    classes: Sequence[Any],
    example: Mapping[str, Any],
    max_records: int,
) -> dict[str, Any]:
    return {
        "Record": _record(schema, metadata, example),
        "Records": {
            "type": "array",
            "items": ref("Record"),
            "minItems": 1,
            "maxItems": max_records,
        },
        "Error": _error(),
        "Prediction": _prediction(task, classes, schema.feature_names),
        "Tensor": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "description": "one feature's values, [rows] or [rows, 1] (tensors of the target "
            "and ignored columns are accepted and dropped)",
            "properties": {
                "name": {"enum": [*schema.feature_names, *schema.dropped]},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"enum": sorted(protocols.V2_TYPES)},
                "data": {"type": "array"},
                "parameters": {"type": "object"},
            },
        },
    }
