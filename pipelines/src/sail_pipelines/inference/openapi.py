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
    string = {"type": "string"}
    limits = f"At most {max_records} records and {max_body_bytes} bytes per request. "
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
        "schema": {"enum": [version]} if version else string,
    }
    predict_body = {
        "schema": {"oneOf": [ref("Record"), ref("Records")]},
        "examples": {"one record": {"value": dict(first)}, "a batch": {"value": records}},
    }
    post_errors = ("400", "413", "415", "422", "503")
    v2_model = _status(
        name=string,
        versions={"type": "array", "items": string},
        platform=string,
        inputs={"type": "array"},
        outputs={"type": "array"},
    )
    v2_answer = _status(
        model_name=string,
        model_version={"type": ["string", "null"]},
        id=string,
        outputs={"type": "array"},
    )
    v2_ready = _json(_status(name=string, ready={"type": "boolean"}), "whether the model is ready")
    v2_infer_body = {
        "schema": _status(inputs={"type": "array", "items": ref("Tensor"), "minItems": 1}),
        "example": _v2_example(schema, features),
    }
    v2_infer = _operation(
        "Open Inference Protocol v2: one tensor per feature",
        "Open Inference v2",
        {
            "200": _json(v2_answer, "the `predict` (and `predict_proba`) tensors"),
            **_errors("404", *post_errors),
        },
        v2_infer_body,
    )
    v2_meta = _operation(
        "the model's inputs and outputs",
        "Open Inference v2",
        {"200": _json(v2_model, "model metadata"), **_errors("404")},
    )
    v2_model_ready = _operation(
        "whether the model is ready",
        "Open Inference v2",
        {"200": v2_ready, "400": v2_ready, **_errors("404")},
    )
    mlflow_body = {
        "schema": {
            "type": "object",
            "description": "exactly one of dataframe_split, dataframe_records, instances, inputs",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "dataframe_records": ref("Records"),
                "dataframe_split": _status(
                    columns={"type": "array", "items": string},
                    data={"type": "array", "items": {"type": "array"}},
                ),
                "instances": ref("Records"),
                "inputs": {"type": "object", "description": "one array of values per feature"},
            },
            "additionalProperties": False,
        },
        "example": {"dataframe_records": features},
    }
    html = {"description": "an HTML page", "content": {"text/html": {"schema": string}}}
    paths: dict[str, Any] = {
        "/predict": {
            "post": _operation(
                "predict one record or a batch",
                "Prediction",
                {
                    "200": _json(ref("Prediction"), "one prediction per record"),
                    **_errors(*post_errors),
                },
                predict_body,
                description=limits + "Send one record (an object) or many (an array of objects).",
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
                    "200": _json(_status(status={"const": "ready"}, bundle_id=string), "ready"),
                    "503": _json(
                        _status(status={"const": "not ready"}, error=string), "not ready, and why"
                    ),
                },
            )
        },
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
                {"200": html},
            )
        },
        "/docs": {
            "get": _operation("interactive documentation of this API", "Pages", {"200": html})
        },
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
                        "values, model info",
                        "content": {"text/plain": {"schema": string}},
                    },
                },
            )
        },
        "/version": {
            "get": _operation(
                "MLflow scoring protocol: the server's version",
                "MLflow",
                {
                    "200": {
                        "description": "the sail-pipelines version",
                        "content": {"text/plain": {"schema": string}},
                    },
                },
            )
        },
        "/invocations": {
            "post": _operation(
                "MLflow scoring protocol: predictions only",
                "MLflow",
                {
                    "200": _json(
                        _status(
                            predictions={"type": "array", "items": label_schema(task, classes)}
                        ),
                        "one prediction per row",
                    ),
                    **_errors(*post_errors),
                },
                mlflow_body,
                description=limits,
            )
        },
        "/v2": {
            "get": _operation(
                "Open Inference Protocol v2: server metadata",
                "Open Inference v2",
                {
                    "200": _json(
                        _status(name=string, version=string, extensions={"type": "array"}), "server"
                    ),
                },
            )
        },
        "/v2/health/live": {
            "get": _operation(
                "Open Inference Protocol v2: live",
                "Open Inference v2",
                {
                    "200": _json(_status(live={"type": "boolean"}), "live"),
                },
            )
        },
        "/v2/health/ready": {
            "get": _operation(
                "Open Inference Protocol v2: ready",
                "Open Inference v2",
                {
                    "200": _json(_status(ready={"type": "boolean"}), "ready"),
                    "400": _json(_status(ready={"type": "boolean"}), "not ready"),
                },
            )
        },
        "/v2/models/{model_name}": {"get": v2_meta, "parameters": [name_param]},
        "/v2/models/{model_name}/ready": {"get": v2_model_ready, "parameters": [name_param]},
        "/v2/models/{model_name}/infer": {"post": v2_infer, "parameters": [name_param]},
        "/v2/models/{model_name}/versions/{model_version}": {
            "get": v2_meta,
            "parameters": [name_param, version_param],
        },
        "/v2/models/{model_name}/versions/{model_version}/ready": {
            "get": v2_model_ready,
            "parameters": [name_param, version_param],
        },
        "/v2/models/{model_name}/versions/{model_version}/infer": {
            "post": v2_infer,
            "parameters": [name_param, version_param],
        },
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
