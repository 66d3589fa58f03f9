"""The prediction API: a verified bundle behind Flask, run by gunicorn.

Every request body is parsed and checked against the bundle's own feature schema before
the model sees it, so any bad input gets a 4xx JSON answer naming the problem and the
worker keeps serving; the catch-all 500 handler is only for faults of our own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Flask, Response, g, jsonify, request
from gunicorn.app.base import BaseApplication
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sail_pipelines.contract.schema import RecordError, Schema, check_record, parse_schema
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import SigningKey


class _InputError(Exception):
    """A client mistake, answered with `status` and a JSON body; never a 500."""

    def __init__(self, status: int, message: str, field: str | None = None, record: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.record = record


class _NonFinite:
    """Stands in for NaN/Infinity while parsing, so the object holding it can name the field."""

    def __init__(self, literal: str):
        self.literal = literal


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Reject duplicate keys (json would keep the last one silently) and NaN/Infinity values."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RecordError(key, f"duplicate key '{key}'")
        if isinstance(value, _NonFinite):
            raise RecordError(key, f"'{key}' is {value.literal}, which is not valid JSON; send a finite number")
        obj[key] = value
    return obj


def _parse_int(text: str) -> int | float:
    """Integers beyond float range become ±inf, as 1e999 does, so the schema rejects them by field."""
    value = int(text)
    return value if abs(value) <= sys.float_info.max else float(text)


def _parse_body(data: bytes) -> Any:
    if not data:
        raise _InputError(400, "request body is empty; send a JSON object or an array of objects")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _InputError(400, "request body is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_NonFinite, parse_int=_parse_int)
    except RecordError as exc:
        raise _InputError(400, exc.message, exc.field) from None
    except RecursionError:
        raise _InputError(400, "JSON is nested too deeply") from None
    except ValueError as exc:
        raise _InputError(400, f"malformed JSON: {exc}") from None


def _check_records(schema: Schema, payload: Any, max_records: int) -> list[dict[str, Any]]:
    """One object is one record, an array is many; either way every record must meet the schema."""
    if isinstance(payload, dict):
        try:
            return [check_record(schema, payload)]
        except RecordError as exc:
            raise _InputError(422, exc.message, exc.field) from None
    if not isinstance(payload, list):
        raise _InputError(422, "request body must be a JSON object (one record) or an array of objects (many)")
    if not payload:
        raise _InputError(422, "the array of records is empty")
    if len(payload) > max_records:
        raise _InputError(413, f"{len(payload)} records in one request; the limit is {max_records}")
    records = []
    for i, record in enumerate(payload):
        if not isinstance(record, dict):
            raise _InputError(422, f"record {i}: each record must be a JSON object", record=i)
        try:
            records.append(check_record(schema, record))
        except RecordError as exc:
            raise _InputError(422, f"record {i}: {exc.message}", exc.field, record=i) from None
    return records


def _frame(schema: Schema, records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=schema.feature_names)
    floats = [c.name for c in schema.features if c.type == "float"]
    return frame.astype({name: float for name in floats})  # JSON 1 and 1.0 must mean the same


def _warm_up_row(schema: Schema) -> dict[str, Any]:
    return {c.name: c.values[0] if c.type == "category" else 0 for c in schema.features}


def _request_id() -> str:
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    return g.request_id


def _error(status: int, message: str, field: str | None = None, record: int | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message, "field": field, "request_id": _request_id()}
    if record is not None:
        body["record"] = record
    return jsonify(body), status


def create_app(bundle: LoadedBundle, max_records: int = 1000, max_body_bytes: int = 1_000_000) -> Flask:
    """Build the API around an already verified bundle (a bad schema raises SailError here)."""
    metadata = bundle.metadata
    schema = parse_schema(metadata.get("schema"))
    registry = metadata.get("registry") or {}
    evaluation = metadata.get("evaluation") or {}
    model_version = registry.get("version")
    class_keys = [str(c) for c in bundle.classes]

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.logger.setLevel(logging.INFO)

    # Prove the model answers before calling ourselves ready, not on the first real request.
    try:
        bundle.predict(_frame(schema, [_warm_up_row(schema)]))
        not_ready_reason = None
    except Exception as exc:  # any failure means the bundle cannot serve; /ready says why
        app.logger.exception("warm-up prediction failed")
        not_ready_reason = f"warm-up prediction failed: {type(exc).__name__}"

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/ready")
    def ready():
        if not_ready_reason:
            return jsonify(status="not ready", error=not_ready_reason), 503
        return jsonify(status="ready", bundle_id=bundle.bundle_id)

    @app.get("/metadata")
    def model_metadata():
        return jsonify(
            model_version=model_version,
            registered_model=registry.get("model"),
            bundle_id=bundle.bundle_id,
            name=metadata.get("name"),
            task=metadata.get("task"),
            metrics=evaluation.get("metrics"),
            data_hash=metadata.get("data_hash"),
            git_commit=metadata.get("git_commit"),
            created_at=metadata.get("created_at"),
            model_card=metadata.get("model_card"),  # where `sail gate` logged the model card (MLflow)
            schema=schema.to_dict(),
        )

    @app.post("/predict")
    def predict():
        if not_ready_reason:
            return _error(503, f"model is not ready: {not_ready_reason}")
        if request.mimetype != "application/json":
            raise _InputError(415, "Content-Type must be application/json")
        data = request.get_data()
        if request.content_length is None and len(data) >= max_body_bytes:
            raise RequestEntityTooLarge()  # werkzeug silently cuts a chunked body off at the limit
        records = _check_records(schema, _parse_body(data), max_records)
        g.n_records = len(records)
        predictions, probabilities = bundle.predict(_frame(schema, records))
        body: dict[str, Any] = {
            "request_id": _request_id(),
            "model_version": model_version,
            "bundle_id": bundle.bundle_id,
            "predictions": predictions.tolist(),
        }
        if probabilities is not None:
            body["probabilities"] = [dict(zip(class_keys, row)) for row in probabilities.tolist()]
        return jsonify(body)

    @app.errorhandler(_InputError)
    def input_error(exc: _InputError):
        return _error(exc.status, exc.message, exc.field, exc.record)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        return _error(413, f"request body is larger than {max_body_bytes} bytes")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = exc.get_response()  # keeps headers such as Allow on a 405
        response.data = json.dumps({"error": exc.description, "field": None, "request_id": _request_id()})
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("request %s failed", _request_id())  # traceback to our log, not the client
        return _error(500, "internal server error")

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = _request_id()
        app.logger.info(
            "request_id=%s %s %s records=%s status=%s",
            _request_id(), request.method, request.path, g.get("n_records", 0), response.status_code,
        )
        return response

    return app


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def worker_count(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use, at least 1: its CPU affinity (taskset, `docker run --cpuset-cpus`)
    capped by a cgroup v2 CPU quota (`docker run --cpus`, Kubernetes CPU limits), rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible: the affinity decides
    return max(1, cpus)


class _Gunicorn(BaseApplication):
    """Runs an app object we already built, instead of gunicorn importing one from a string."""

    def __init__(self, app: Flask, options: dict[str, Any]):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)
        # gunicorn >= 25.1 otherwise opens one control socket per user (~/.gunicorn/gunicorn.ctl)
        # that a second server on the same machine would fight over.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        return self.application


def run_server(
    bundle_dir: Path,
    key: SigningKey,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    max_records: int = 1000,
) -> None:
    """Verify and load the bundle here first, so a rejected bundle fails before anything listens."""
    app = create_app(load_bundle(bundle_dir, key), max_records=max_records)
    bind_host = f"[{host}]" if ":" in host else host
    options = {
        "bind": f"{bind_host}:{port}",
        "workers": workers or worker_count(),
        "preload_app": True,  # workers fork from the loaded, warmed-up model
        "timeout": 60,
        "graceful_timeout": 30,
        "accesslog": "-",
        "errorlog": "-",
    }
    _Gunicorn(app, options).run()
