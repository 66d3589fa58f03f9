"""The prediction API: a verified bundle behind Flask, run by gunicorn.

Every request body is parsed and checked against the bundle's own feature schema before
the model sees it, so any bad input gets a 4xx JSON answer naming the problem and the
worker keeps serving; the catch-all 500 handler is only for faults of our own. Besides
/predict it speaks MLflow's scoring protocol and the Open Inference Protocol v2
(`protocols.py`). A compiled bundle is served by ONNX Runtime from plain arrays: neither
pandas nor scikit-learn is imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import uuid
from importlib import metadata as distributions
from pathlib import Path
from typing import Any, Callable

from flask import Flask, Response, g, jsonify, request
from gunicorn.app.base import BaseApplication
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sail_pipelines.contract.ranges import beyond, refuses
from sail_pipelines.contract.stl import NonFiniteFeatures
from sail_pipelines.inference import metrics, page, prediction_log, protocols, server_logs
from sail_pipelines.inference.onnx import Prediction
from sail_pipelines.inference.requests import (
    InputError,
    check_outputs,
    checked_columns,
    parse_json,
    records_to_columns,
    warm_up_record,
)
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import VerifyKey


def _request_id() -> str:
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    return g.request_id


def _error(
    status: int, message: str, field: str | None = None, record: int | None = None
) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message, "field": field, "request_id": _request_id()}
    if record is not None:
        body["record"] = record
    if request.path == "/invocations":  # what MLflow's clients read
        body.update(error_code="BAD_REQUEST" if status < 500 else "INTERNAL_ERROR", message=message)
    return jsonify(body), status


def _version() -> str:
    try:
        return distributions.version("sail-pipelines")
    except distributions.PackageNotFoundError:
        return "unknown"


def runtime_info(bundle: LoadedBundle) -> dict[str, Any]:
    """Which runtime serves and, when scikit-learn does, why the compiled model does not."""
    inference = bundle.metadata.get("inference") or {}
    reason = None
    if bundle.runtime != "onnx":
        reason = inference.get("reason") or "the bundle carries no compiled model"
    return {"runtime": bundle.runtime, "reason": reason, "agreement": inference.get("agreement")}


# endpoints that write the prediction log
PREDICTING = frozenset({"predict", "invocations", "v2_infer"})


def create_app(
    bundle: LoadedBundle,
    max_records: int = 1000,
    max_body_bytes: int = 1_000_000,
    log_settings: prediction_log.LogSettings | None = None,
) -> Flask:
    """Build the API around an already verified bundle (a bad schema raises SailError here)."""
    metadata = bundle.metadata
    schema = bundle.schema
    registry = metadata.get("registry") or {}
    evaluation = metadata.get("evaluation") or {}
    model_version = registry.get("version")
    model_name = registry.get("model") or metadata.get("name") or "model"
    task = metadata.get("task")
    classes = bundle.classes
    class_keys = [str(c) for c in classes]
    serving = runtime_info(bundle)
    refuse_out_of_range = refuses(metadata)
    plog = prediction_log.for_bundle(log_settings or prediction_log.LogSettings(), bundle)
    stats = metrics.Metrics(metadata, bundle.bundle_id, bundle.runtime, schema.target.name)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.logger.setLevel(logging.INFO)

    def predict_columns(columns: dict[str, list[Any]]) -> tuple[Any, Any]:
        """Every protocol's checked columns, through the training-range rule, to the model."""
        g.n_records = n = len(next(iter(columns.values())))
        g.columns = columns
        g.strays = strays = beyond(columns, bundle.limits)
        if strays and refuse_out_of_range:
            raise InputError(422, strays[0].message(), strays[0].field, strays[0].record)
        try:
            g.scored = bundle.predict(columns)
        except NonFiniteFeatures as exc:
            raise InputError(422, str(exc), exc.field, exc.rows[0] if n > 1 else None) from exc
        predictions, probabilities = g.scored
        check_outputs(predictions, probabilities, strays)
        stats.scored(g.scored[0], strays)
        return g.scored

    # Prove the model answers before calling ourselves ready, not on the first real request.
    try:
        _, warm_probabilities = bundle.predict(
            records_to_columns(schema, [warm_up_record(schema, metadata)])
        )
        not_ready_reason = None
    except Exception as exc:  # any failure means the bundle cannot serve; /ready says why
        app.logger.exception("warm-up prediction failed")
        not_ready_reason = f"warm-up prediction failed: {type(exc).__name__}"
        warm_probabilities = None

    def json_body(untyped: bool = False) -> Any:
        """The parsed body of a POST, refused when not JSON, too large or not ready to serve.
        `untyped`: a body without Content-Type is JSON too (v2 clients send none)."""
        if not_ready_reason:
            raise InputError(503, f"model is not ready: {not_ready_reason}")
        if request.headers.get("Inference-Header-Content-Length"):
            raise InputError(415, "binary tensor data is not supported; send the tensors as JSON")
        if request.mimetype != "application/json" and not (untyped and not request.mimetype):
            raise InputError(415, "Content-Type must be application/json")
        data = request.get_data()
        if request.content_length is None and len(data) >= max_body_bytes:
            raise RequestEntityTooLarge()  # werkzeug silently cuts a chunked body off at the limit
        return parse_json(data)

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = stats.exposition()
        return Response(body, mimetype=None, content_type=content_type)

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
            task=task,
            metrics=evaluation.get("metrics"),
            data_hash=metadata.get("data_hash"),
            git_commit=metadata.get("git_commit"),
            created_at=metadata.get("created_at"),
            signing=metadata.get("signing"),  # algorithm and key id (the public key's fingerprint)
            # where `sail gate` logged the model card (MLflow)
            model_card=metadata.get("model_card"),
            schema=schema.to_dict(),
            inference=serving,
        )

    @app.post("/predict")
    def predict() -> Response:
        predictions, probabilities = predict_columns(
            checked_columns(schema, json_body(), max_records)
        )
        body: dict[str, Any] = {
            "request_id": _request_id(),
            "model_version": model_version,
            "bundle_id": bundle.bundle_id,
            "predictions": predictions.tolist(),
        }
        if probabilities is not None:
            body["probabilities"] = [
                dict(zip(class_keys, row, strict=True)) for row in probabilities.tolist()
            ]
        if g.strays:
            body["out_of_range"] = [s.to_dict() for s in g.strays]
        return jsonify(body)

    # MLflow scoring protocol
    @app.get("/ping")
    def ping():
        if not_ready_reason:
            return _error(503, f"model is not ready: {not_ready_reason}")
        return Response("\n", status=200, mimetype="application/json")

    @app.get("/version")
    def version():
        return Response(_version(), mimetype="text/plain")

    @app.post("/invocations")
    def invocations():
        predictions, _ = predict_columns(protocols.mlflow_columns(schema, json_body(), max_records))
        return jsonify(protocols.mlflow_response(predictions))

    # Open Inference Protocol v2
    v2_meta = protocols.v2_metadata(
        schema,
        model_name,
        model_version,
        protocols.PLATFORMS[bundle.runtime],
        str(task),
        classes,
        warm_probabilities is not None,
    )

    def known_model(name: str, version: str | None = None) -> None:
        if name != model_name:
            raise InputError(
                404, f"unknown model '{name}'; this server serves '{model_name}'", "model_name"
            )
        if version is not None and version != model_version:
            raise InputError(
                404,
                f"unknown version '{version}' of '{name}'; this server serves "
                f"version {model_version}",
                "model_version",
            )

    @app.get("/v2")
    def v2_server():
        return jsonify(name="sail-pipelines", version=_version(), extensions=[])

    @app.get("/v2/health/live")
    def v2_live():
        return jsonify(live=True)

    @app.get("/v2/health/ready")
    def v2_ready():
        return (jsonify(ready=True), 200) if not not_ready_reason else (jsonify(ready=False), 400)

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None):
        known_model(name, version)
        return jsonify(v2_meta)

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None):
        known_model(name, version)
        status = 400 if not_ready_reason else 200
        return jsonify(name=name, ready=not not_ready_reason), status

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None):
        known_model(name, version)
        body = json_body(untyped=True)
        columns, wanted = protocols.v2_columns(schema, body, max_records)
        predictions, probabilities = predict_columns(columns)
        ident = body.get("id") if isinstance(body.get("id"), str) else _request_id()
        return jsonify(
            protocols.v2_response(
                model_name, model_version, ident, str(task), predictions, probabilities, wanted
            )
        )

    # /openapi.json, / and /docs
    page.register(app, bundle, model_name, max_records, max_body_bytes)

    @app.errorhandler(InputError)
    def input_error(exc: InputError):
        stats.refusal(exc.field)
        return _error(exc.status, exc.message, exc.field, exc.record)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        return _error(413, f"request body is larger than {max_body_bytes} bytes")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = exc.get_response()  # keeps headers such as Allow on a 405
        response.data = json.dumps(
            {"error": exc.description, "field": None, "request_id": _request_id()}
        )
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # traceback to our log, not the client
        app.logger.exception("request %s failed", _request_id())
        return _error(500, "internal server error")

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = _request_id()
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        stats.request(
            request.url_rule.rule if request.url_rule else "(unmatched)",
            response.status_code,
            elapsed,
        )
        if request.endpoint in PREDICTING and plog.wanted():
            scored: Prediction | None = g.get("scored")
            plog.write(
                _request_id(),
                request.path,
                response.status_code,
                elapsed,
                g.get("columns"),
                prediction_log.outputs(scored[0], scored[1], class_keys) if scored else None,
                g.get("strays", ()),
            )
        server_logs.access(
            _request_id(),
            request.method,
            request.path,
            response.status_code,
            elapsed,
            g.get("n_records", 0),
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
    """Runs our app factory in each worker, instead of gunicorn importing an app from a string."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]):
        self.factory = factory
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
        return self.factory()


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_server(
    bundle_dir: Path,
    key: VerifyKey,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    max_records: int = 1000,
    log_settings: prediction_log.LogSettings | None = None,
    access_log: bool = False,
) -> None:
    """Verify the bundle and check its schema here first, so a rejected bundle fails before
    anything listens. Each worker then builds the app and warms the model up itself: an ONNX
    Runtime session made before a fork leaves the child hanging at exit on a lock of a thread
    it does not have. A scikit-learn model is unpickled and warmed up once, here, and shared."""
    # One thread per worker, set before OpenMP or BLAS is loaded (they read it once): an OpenMP
    # pool (histogram gradient boosting) started here would leave every forked worker hanging on
    # its first prediction, and a pool per request costs more than it gains on one row.
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    bundle = load_bundle(bundle_dir, key)
    schema = bundle.schema
    server_logs.configure(access_log)  # JSON lines on stderr, inherited by every worker
    if bundle.runtime == "sklearn":  # unpickled and imported once, before the workers fork
        bundle.serve_single_threaded()
        with contextlib.suppress(Exception):  # a failure shows in each worker's /ready
            bundle.predict(records_to_columns(schema, [warm_up_record(schema, bundle.metadata)]))
    bind_host = f"[{host}]" if ":" in host else host
    made_dir = metrics.prepare_multiprocess_dir()  # before any worker imports prometheus_client
    options = {
        "bind": f"{bind_host}:{port}",
        "workers": workers or worker_count(),
        # Threads keep client connections alive (a sync worker closes each one), which doubles
        # the requests a worker answers; ONNX Runtime sessions are safe to run from threads.
        "worker_class": "gthread",
        "threads": 4,
        "keepalive": 5,
        "preload_app": False,
        "timeout": 60,
        "graceful_timeout": 30,
        "accesslog": None,  # the app writes its own, when asked for (server_logs.access)
        "errorlog": "-",
        "logger_class": server_logs.GunicornLogger,
        "child_exit": metrics.child_exit,
    }
    try:
        _Gunicorn(
            lambda: create_app(bundle, max_records=max_records, log_settings=log_settings), options
        ).run()
    finally:
        metrics.remove_dir(made_dir)
