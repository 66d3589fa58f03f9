"""The OpenAPI 3.1 document of the API, made from the bundle's own schema and metadata.

Each feature is described as the server checks it (type, allowed values, null or not), with
the training range beside it and the accepted bundle's holdout rows as examples, so the
document, the try-it page and `/docs` cannot drift from what `/predict` accepts (the component
schemas are in openapi_schemas.py). A pure function of plain data: nothing here imports pandas
or scikit-learn.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sail_pipelines.contract.schema import Schema
from sail_pipelines.inference import protocols
from sail_pipelines.inference.openapi_schemas import components, label_schema, ref

JSON = "application/json"
ERRORS = {
    "400": "the body is not valid JSON (or holds NaN, Infinity or a duplicate key)",
    "404": "no such model or version",
    "413": "too many records or too large a body",
    "415": "the body is not sent as application/json",
    "422": "a record breaks the schema; `field` names the culprit and `record` its position",
    "503": "the model is not ready to serve",
}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema, **extra}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(ref("Error"), ERRORS[code]) for code in codes}


def _operation(
    summary: str,
    tag: str,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    operation = {"summary": summary, "tags": [tag], "responses": responses, **extra}
    if body:
        operation["requestBody"] = {"required": True, "content": {JSON: body}}
    return operation


def _status(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


def _v2_example(schema: Schema, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": c.name,
                "datatype": protocols.v2_datatype(c),
                "shape": [len(records), 1],
                "data": [r.get(c.name) for r in records],
            }
            for c in schema.features
        ]
    }


STRING = {"type": "string"}
POST_ERRORS = ("400", "413", "415", "422", "503")
HTML = {"description": "an HTML page", "content": {"text/html": {"schema": STRING}}}


EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "true: each record's explanation too (`explanations`): a contribution per "
    "source column, the base value and the output they add up to. A model without an "
    "explainer (neither linear nor a tree ensemble), or a server without scikit-learn, pandas "
    "and shap (a compiled model's image), answers 422 with `field` = `explain`.",
}


def _prediction_paths(
    first: Mapping[str, Any], records: list[dict[str, Any]], limits: str
) -> dict[str, Any]:
    """/predict and the liveness and readiness checks."""
    predict_body = {
        "schema": {"oneOf": [ref("Record"), ref("Records")]},
        "examples": {"one record": {"value": dict(first)}, "a batch": {"value": records}},
    }
    return {
        "/predict": {
            "post": _operation(
                "predict one record or a batch",
                "Prediction",
                {
                    "200": _json(ref("Prediction"), "one prediction per record"),
                    **_errors(*POST_ERRORS),
                },
                predict_body,
                description=limits + "Send one record (an object) or many (an array of objects).",
                parameters=[EXPLAIN],
            )
        },
        "/health": {
            "get": _operation(
                "the process is alive",
                "Health",
                {"200": _json(_status(status={"const": "ok"}), "alive")},
            )
        },
        "/ready": {
            "get": _operation(
                "the model has answered a warm-up prediction",
                "Health",
                {
                    "200": _json(_status(status={"const": "ready"}, bundle_id=STRING), "ready"),
                    "503": _json(
                        _status(status={"const": "not ready"}, error=STRING), "not ready, and why"
                    ),
                },
            )
        },
    }


def _model_paths() -> dict[str, Any]:
    """The model's metadata, this document and the pages that read it."""
    return {
        "/metadata": {
            "get": _operation(
                "model, version, bundle, gate metrics, data hash and schema",
                "Model",
                {
                    "200": _json(
                        {"type": "object", "required": ["bundle_id", "schema", "task"]}, "metadata"
                    )
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "this document", "Model", {"200": _json({"type": "object"}, "OpenAPI 3.1")}
            )
        },
        "/": {
            "get": _operation(
                "try-it page: a form for one record, a CSV upload for a batch",
                "Pages",
                {"200": HTML},
            )
        },
        "/docs": {
            "get": _operation("interactive documentation of this API", "Pages", {"200": HTML})
        },
    }


def _mlflow_body(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": {
            "type": "object",
            "description": "exactly one of dataframe_split, dataframe_records, instances, inputs",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "dataframe_records": ref("Records"),
                "dataframe_split": _status(
                    columns={"type": "array", "items": STRING},
                    data={"type": "array", "items": {"type": "array"}},
                ),
                "instances": ref("Records"),
                "inputs": {"type": "object", "description": "one array of values per feature"},
            },
            "additionalProperties": False,
        },
        "example": {"dataframe_records": features},
    }


def _mlflow_paths(
    task: str, classes: Sequence[Any], features: list[dict[str, Any]], limits: str
) -> dict[str, Any]:
    """MLflow's scoring protocol, and /metrics between its routes (the document's order)."""
    text = {"text/plain": {"schema": STRING}}
    predictions = _status(predictions={"type": "array", "items": label_schema(task, classes)})
    return {
        "/ping": {
            "get": _operation(
                "MLflow scoring protocol: ready",
                "MLflow",
                {
                    "200": {
                        "description": "ready (an empty body, as MLflow's scoring server answers)"
                    },
                    **_errors("503"),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics of all workers (text exposition format)",
                "Health",
                {
                    "200": {
                        "description": "requests, latency, predictions, refusals, out-of-range "
                        "values, outliers, model info",
                        "content": text,
                    },
                },
            )
        },
        "/version": {
            "get": _operation(
                "MLflow scoring protocol: the server's version",
                "MLflow",
                {"200": {"description": "the sail-pipelines version", "content": text}},
            )
        },
        "/invocations": {
            "post": _operation(
                "MLflow scoring protocol: predictions only",
                "MLflow",
                {
                    "200": _json(predictions, "one prediction per row"),
                    **_errors(*POST_ERRORS),
                },
                _mlflow_body(features),
                description=limits,
            )
        },
    }


def _v2_model_operations(
    schema: Schema, features: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The Open Inference v2 operations on one model: its metadata, readiness and inference."""
    v2_model = _status(
        name=STRING,
        versions={"type": "array", "items": STRING},
        platform=STRING,
        inputs={"type": "array"},
        outputs={"type": "array"},
    )
    v2_answer = _status(
        model_name=STRING,
        model_version={"type": ["string", "null"]},
        id=STRING,
        outputs={"type": "array"},
    )
    v2_ready = _json(_status(name=STRING, ready={"type": "boolean"}), "whether the model is ready")
    v2_infer_body = {
        "schema": _status(inputs={"type": "array", "items": ref("Tensor"), "minItems": 1}),
        "example": _v2_example(schema, features),
    }
    infer = _operation(
        "Open Inference Protocol v2: one tensor per feature",
        "Open Inference v2",
        {
            "200": _json(v2_answer, "the `predict` (and `predict_proba`) tensors"),
            **_errors("404", *POST_ERRORS),
        },
        v2_infer_body,
    )
    meta = _operation(
        "the model's inputs and outputs",
        "Open Inference v2",
        {"200": _json(v2_model, "model metadata"), **_errors("404")},
    )
    ready = _operation(
        "whether the model is ready",
        "Open Inference v2",
        {"200": v2_ready, "400": v2_ready, **_errors("404")},
    )
    return meta, ready, infer


def _v2_paths(
    schema: Schema, model_name: str, version: Any, features: list[dict[str, Any]]
) -> dict[str, Any]:
    """The Open Inference Protocol v2: the server's routes, then each model route with and
    without its version."""
    name_param = {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"enum": [model_name]},
    }
    version_param = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"enum": [version]} if version else STRING,
    }
    boolean = {"type": "boolean"}
    server = _status(name=STRING, version=STRING, extensions={"type": "array"})
    paths: dict[str, Any] = {
        "/v2": _v2_get(
            "Open Inference Protocol v2: server metadata", {"200": _json(server, "server")}
        ),
        "/v2/health/live": _v2_get(
            "Open Inference Protocol v2: live", {"200": _json(_status(live=boolean), "live")}
        ),
        "/v2/health/ready": _v2_get(
            "Open Inference Protocol v2: ready",
            {
                "200": _json(_status(ready=boolean), "ready"),
                "400": _json(_status(ready=boolean), "not ready"),
            },
        ),
    }
    meta, ready, infer = _v2_model_operations(schema, features)
    for prefix, parameters in (
        ("/v2/models/{model_name}", [name_param]),
        ("/v2/models/{model_name}/versions/{model_version}", [name_param, version_param]),
    ):
        paths[prefix] = {"get": meta, "parameters": parameters}
        paths[f"{prefix}/ready"] = {"get": ready, "parameters": parameters}
        paths[f"{prefix}/infer"] = {"post": infer, "parameters": parameters}
    return paths


def _v2_get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": _operation(summary, "Open Inference v2", responses)}


def document(
    schema: Schema,
    metadata: Mapping[str, Any],
    *,
    model_name: str,
    classes: Sequence[Any],
    examples: Sequence[Mapping[str, Any]],
    max_records: int,
    max_body_bytes: int,
) -> dict[str, Any]:
    """The whole document. `examples`: records as a client sends them (the holdout rows)."""
    task = str(metadata.get("task"))
    version = (metadata.get("registry") or {}).get("version")
    first = examples[0]
    records = [dict(r) for r in examples[:3]]
    features = [{k: r.get(k) for k in schema.feature_names} for r in records]
    limits = f"At most {max_records} records and {max_body_bytes} bytes per request. "
    paths = {
        **_prediction_paths(first, records, limits),
        **_model_paths(),
        **_mlflow_paths(task, classes, features, limits),
        **_v2_paths(schema, model_name, version, features),
    }
    registry = metadata.get("registry") or {}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{model_name} prediction API",
            "version": str(version or "unversioned"),
            "description": (
                f"A {task} model ({metadata.get('name')}), each request checked against "
                f"the feature schema of the bundle it was served from. {limits}"
                "Bad input gets a 4xx JSON body naming the `field` at fault."
            ),
            "x-sail": {
                "task": task,
                "model": registry.get("model") or model_name,
                "version": version,
                "max_records": max_records,
                "max_body_bytes": max_body_bytes,
                "classes": list(classes),
                "example": dict(first),
            },
        },
        "paths": paths,
        "components": {"schemas": components(schema, metadata, task, classes, first, max_records)},
    }
