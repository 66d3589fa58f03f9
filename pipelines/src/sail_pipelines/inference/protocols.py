"""The standard protocols the server speaks beside /predict, as pure functions of parsed JSON.

- MLflow's scoring protocol (`/invocations`): `dataframe_split`, `dataframe_records`,
  `instances` and `inputs`, answered as `{"predictions": [...]}`, the shape `mlflow models
  serve` gives for the same registered model (its pyfunc returns labels or values).
- The Open Inference Protocol v2 (KServe, Seldon MLServer, Triton): one typed tensor per
  feature in, `predict` (and `predict_proba`) tensors out.

Each turns its payload into records that go through the same schema check as /predict, so
bad input gets the same 4xx naming the field.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.inference.requests import InputError, NonFinite, checked_columns

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

V2_NUMBERS = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}
V2_TYPES = V2_NUMBERS | {"BOOL", "BYTES"}
V2_LABEL, V2_PROBABILITIES = "predict", "predict_proba"
# the outlier detector's answer, one value per record (bundles that carry a detector)
V2_OUTLIERS = {"outlier_score": "FP64", "outlier": "BOOL"}
PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn"}  # by the runtime that serves


# --- MLflow scoring protocol -------------------------------------------------------------------


def mlflow_columns(schema: Schema, body: Any, max_records: int) -> dict[str, list[Any]]:
    """The checked feature columns of an /invocations body."""
    if not isinstance(body, dict):
        raise InputError(
            422, f"the body must be a JSON object with one of {', '.join(MLFLOW_KEYS)}"
        )
    given = [k for k in MLFLOW_KEYS if k in body]
    extra = sorted(set(body) - set(MLFLOW_KEYS) - {"params"})
    if len(given) != 1 or extra:
        odd = extra[0] if extra else (given[1] if given[1:] else None)
        raise InputError(
            422,
            f"the body must hold exactly one of {', '.join(MLFLOW_KEYS)}"
            + (f"; got {', '.join(given + extra)}" if given or extra else ""),
            odd,
        )
    if body.get("params"):
        raise InputError(422, "this model takes no params", "params")
    key = given[0]
    payload = body[key]
    if key == "dataframe_split":
        payload = _split_records(payload)
    elif key in ("instances", "inputs") and isinstance(payload, dict):
        payload = _column_records(payload, key)
    elif key == "dataframe_records" and not isinstance(payload, list):
        raise InputError(422, "dataframe_records must be an array of objects", key)
    return checked_columns(schema, payload, max_records, key)


def _split_records(split: Any) -> list[dict[str, Any]]:
    """pandas' 'split' orientation: {"columns": [...], "data": [[...], ...]} ("index" ignored)."""
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise InputError(
            422,
            "dataframe_split must be an object with 'columns' and 'data' arrays",
            "dataframe_split",
        )
    columns = split["columns"]
    if not all(isinstance(c, str) for c in columns):
        raise InputError(422, "dataframe_split.columns must be strings", "dataframe_split.columns")
    rows = []
    for i, row in enumerate(split["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InputError(
                422,
                f"dataframe_split.data[{i}] must be an array of {len(columns)} values "
                "(one per column)",
                "dataframe_split.data",
                record=i,
            )
        rows.append(dict(zip(columns, row, strict=True)))
    return rows


def _column_records(columns: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """{"feature": [values...], ...} (MLflow's columnar `inputs`/`instances`) as records."""
    lengths = set()
    for name, values in columns.items():
        if not isinstance(values, list):
            raise InputError(422, f"{key}.{name} must be an array of values (one per row)", name)
        lengths.add(len(values))
    if len(lengths) > 1:
        raise InputError(
            422, f"the columns of {key} have different lengths: {sorted(lengths)}", key
        )
    n = lengths.pop() if lengths else 0
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def mlflow_response(predictions: np.ndarray) -> dict[str, Any]:
    return {"predictions": predictions.tolist()}


# --- Open Inference Protocol v2 ----------------------------------------------------------------


def v2_datatype(column: Column) -> str:
    """The tensor datatype the metadata endpoint names for a column: numbers as FP64 or INT64
    (any numeric datatype is accepted), booleans as BOOL, dates, text and string categories as
    BYTES (UTF-8 strings in JSON); a category of numbers travels as numbers."""
    if column.type == "float":
        return "FP64"
    if column.type == "int":
        return "INT64"
    if column.type == "bool":
        return "BOOL"
    if column.type in ("datetime", "text") or all(isinstance(v, str) for v in column.values or ()):
        return "BYTES"
    return "FP64" if any(isinstance(v, float) for v in column.values or ()) else "INT64"


def _fits(datatype: str, expected: str) -> bool:
    """Any numeric datatype for a number (the spec lets a server convert), else the very one."""
    return datatype in V2_NUMBERS if expected in V2_NUMBERS else datatype == expected


def v2_label_datatype(values: list[Any], task: str) -> str:
    if task != "classification":
        return "FP64"
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    return "BYTES" if any(isinstance(v, str) for v in values) else "INT64"


def v2_metadata(
    schema: Schema,
    name: str,
    version: str | None,
    platform: str,
    task: str,
    classes: list[Any],
    probabilities: bool,
    outliers: bool = False,
) -> dict[str, Any]:
    outputs = [{"name": V2_LABEL, "datatype": v2_label_datatype(classes, task), "shape": [-1]}]
    if probabilities:
        outputs.append({"name": V2_PROBABILITIES, "datatype": "FP64", "shape": [-1, len(classes)]})
    if outliers:
        outputs += [{"name": n, "datatype": t, "shape": [-1]} for n, t in V2_OUTLIERS.items()]
    return {
        "name": name,
        "versions": [version] if version else [],
        "platform": platform,
        "inputs": [
            {"name": c.name, "datatype": v2_datatype(c), "shape": [-1, 1]} for c in schema.features
        ],
        "outputs": outputs,
    }


def _flat(data: Any) -> list[Any]:
    """Tensor data may be nested by row ([[1], [2]]) or flat ([1, 2]); both flatten to row order."""
    if not isinstance(data, list):
        return [data]
    return [v for item in data for v in _flat(item)]


def v2_columns(
    schema: Schema, body: Any, max_records: int
) -> tuple[dict[str, list[Any]], list[str]]:
    """The checked feature columns of a v2 infer request (one tensor per feature; tensors of
    the target and ignored columns are accepted and dropped), and the outputs asked for."""
    if not isinstance(body, dict):
        raise InputError(422, "the infer request must be a JSON object with 'inputs'")
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InputError(422, "'inputs' must be a non-empty array of tensors", "inputs")
    columns = {c.name: c for c in (*schema.features, schema.target, *schema.ignored)}
    values: dict[str, list[Any]] = {}
    for i, tensor in enumerate(tensors):
        name, data = _v2_tensor(tensor, i, columns, schema.dropped)
        if name in values:
            raise InputError(422, f"tensor '{name}' is given twice", name)
        values[name] = data
    missing = [n for n in schema.feature_names if n not in values]
    if missing:
        raise InputError(422, f"missing input tensor(s): {', '.join(missing)}", missing[0])
    rows = {len(v) for v in values.values()}
    if len(rows) > 1:
        raise InputError(
            422, f"the input tensors have different numbers of rows: {sorted(rows)}", "inputs"
        )
    n = rows.pop()
    features = schema.feature_names
    records = [{name: values[name][i] for name in features} for i in range(n)]
    return checked_columns(schema, records, max_records, "inputs"), _v2_outputs(body.get("outputs"))


def _v2_tensor(
    tensor: Any, i: int, columns: dict[str, Column], dropped: tuple[str, ...]
) -> tuple[str, list[Any]]:
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InputError(422, f"{where} must be an object with a 'name'", where)
    name = tensor["name"]
    if name not in columns:
        features = [n for n in columns if n not in dropped]
        raise InputError(
            422, f"unexpected input tensor '{name}'; the model takes {', '.join(features)}", name
        )
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(
            422, f"tensor '{name}': 'shape' must be an array of non-negative integers", name
        )
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InputError(422, f"tensor '{name}': shape {shape} is not [rows] or [rows, 1]", name)
    if not isinstance(datatype, str) or datatype not in V2_TYPES:  # a list or object: no hash
        raise InputError(
            422,
            f"tensor '{name}': datatype {datatype!r} is not one of {', '.join(sorted(V2_TYPES))}",
            name,
        )
    expected = v2_datatype(columns[name])
    if name not in dropped and not _fits(datatype, expected):
        kind = "a numeric datatype such as " if expected in V2_NUMBERS else ""
        raise InputError(
            422,
            f"tensor '{name}': datatype {datatype} does not fit the feature; send {kind}{expected}",
            name,
        )
    if "data" not in tensor:
        raise InputError(422, f"tensor '{name}' has no 'data'", name)
    data = _flat(tensor["data"])
    if len(data) != prod(shape):
        raise InputError(
            422, f"tensor '{name}': {len(data)} values do not fill shape {shape}", name
        )
    _check_data(name, datatype, data)
    return name, data


def _whole(value: Any) -> bool:
    """JSON has numbers, not integers: 54.0 is as whole as 54 (as many clients write it)."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _check_data(name: str, datatype: str, data: list[Any]) -> None:
    """Each value must be of the tensor's datatype (JSON null stands for a missing value, which
    the schema judges); an integer must fit its datatype's range."""
    odd = next((v for v in data if isinstance(v, NonFinite)), None)
    if odd is not None:
        raise InputError(
            400, f"tensor '{name}': {odd.literal} is not valid JSON; send a finite number", name
        )
    present = [v for v in data if v is not None]
    if datatype == "BYTES":
        ok, kind = all(isinstance(v, str) for v in present), "strings"
    elif datatype == "BOOL":
        ok, kind = all(isinstance(v, bool) for v in present), "true or false"
    elif datatype.startswith(("INT", "UINT")):
        info = np.iinfo(datatype.lower())
        ok = all(_whole(v) and info.min <= v <= info.max for v in present)
        kind = f"integers from {info.min} to {info.max}"
    else:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        kind = "numbers"
    if not ok:
        raise InputError(422, f"tensor '{name}': {datatype} data must be {kind}", name)


def _v2_outputs(requested: Any) -> list[str]:
    if requested is None:
        return [V2_LABEL, V2_PROBABILITIES, *V2_OUTLIERS]
    if not isinstance(requested, list):
        raise InputError(422, "'outputs' must be an array of {\"name\": ...} objects", "outputs")
    names = []
    for i, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in (V2_LABEL, V2_PROBABILITIES, *V2_OUTLIERS):
            raise InputError(
                422,
                f"outputs[{i}]: unknown output {name!r}; "
                f"the model has {V2_LABEL}, {V2_PROBABILITIES}, {', '.join(V2_OUTLIERS)}",
                f"outputs[{i}].name",
            )
        names.append(name)
    return names


def v2_response(
    name: str,
    version: str | None,
    request_id: str,
    task: str,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    wanted: list[str],
    outliers: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """`outliers`: the detector's answer (`Outliers.outputs()`), when the bundle has one."""
    labels = predictions.tolist()
    outputs = []
    if V2_LABEL in wanted:
        outputs.append(
            {
                "name": V2_LABEL,
                "datatype": v2_label_datatype(labels, task),
                "shape": [len(labels)],
                "data": labels,
            }
        )
    if V2_PROBABILITIES in wanted and probabilities is not None:
        outputs.append(
            {
                "name": V2_PROBABILITIES,
                "datatype": "FP64",
                "shape": list(probabilities.shape),
                "data": probabilities.ravel().tolist(),
            }
        )
    for output, datatype in V2_OUTLIERS.items():
        if outliers and output in wanted:
            data = outliers[output]
            outputs.append(
                {"name": output, "datatype": datatype, "shape": [len(data)], "data": data}
            )
    return {"model_name": name, "model_version": version, "id": request_id, "outputs": outputs}
