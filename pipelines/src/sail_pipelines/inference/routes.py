"""The routes of the prediction API, in groups: health and metadata, /predict, MLflow's scoring
protocol, the Open Inference Protocol v2, the error handlers and the per-request hooks. Every
group takes the Flask app and the one `Service` they share, which serve.create_app builds."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from importlib import metadata as distributions
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sail_pipelines.contract.ranges import beyond
from sail_pipelines.contract.stl import NonFiniteFeatures
from sail_pipelines.inference import (
    explain,
    metrics,
    outliers,
    prediction_log,
    protocols,
    server_logs,
)
from sail_pipelines.inference.onnx import Prediction
from sail_pipelines.inference.requests import (
    InputError,
    check_explanations,
    check_outputs,
    checked_columns,
    parse_json,
)
from sail_pipelines.integrity.bundle import LoadedBundle

# endpoints that write the prediction log
PREDICTING = frozenset({"predict", "invocations", "v2_infer"})
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a caller's id is logged as is: no odd bytes


def _request_id() -> str:
    """The caller's X-Request-ID (the router sets one, the same for the live container and its
    shadow, so their prediction logs join), else a new one."""
    if "request_id" not in g:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
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


@dataclass(frozen=True)
class Service:
    """One served bundle and what every route reads of it; `not_ready_reason` is set when the
    warm-up prediction failed."""

    bundle: LoadedBundle
    max_records: int
    max_body_bytes: int
    refuse_out_of_range: bool
    plog: prediction_log.PredictionLog
    stats: metrics.Metrics
    serving: dict[str, Any]
    not_ready_reason: str | None
    has_probabilities: bool

    @property
    def registry(self) -> dict[str, Any]:
        return self.bundle.metadata.get("registry") or {}

    @property
    def model_version(self) -> Any:
        return self.registry.get("version")

    @property
    def model_name(self) -> str:
        return self.registry.get("model") or self.bundle.metadata.get("name") or "model"

    @property
    def class_keys(self) -> list[str]:
        return [str(c) for c in self.bundle.classes]

    def predict_columns(self, columns: dict[str, list[Any]]) -> tuple[Any, Any]:
        """Every protocol's checked columns, through the training-range rule, to the model."""
        g.n_records = n = len(next(iter(columns.values())))
        g.columns = columns
        g.strays = strays = beyond(columns, self.bundle.limits)
        if strays and self.refuse_out_of_range:
            raise InputError(422, strays[0].message(), strays[0].field, strays[0].record)
        try:
            scored, found = outliers.predict(self.bundle, columns)
            g.outliers = found
        except NonFiniteFeatures as exc:
            raise _too_extreme(exc, n) from exc
        self.stats.outliers(found)
        refused = outliers.refusal(self.bundle.metadata, found, n > 1)
        if refused:  # logged as a refusal: no outputs
            raise InputError(422, refused[1], None, refused[0] if n > 1 else None)
        g.scored = scored
        predictions, probabilities = g.scored
        check_outputs(predictions, probabilities, strays)
        self.stats.scored(g.scored[0], strays)
        return g.scored

    def outlier_outputs(self) -> dict[str, list[Any]]:
        """The request's `outlier_score` and `outlier` fields (none without a detector)."""
        found = g.get("outliers")
        return found.outputs() if found is not None else {}

    def json_body(self, untyped: bool = False) -> Any:
        """The parsed body of a POST, refused when not JSON, too large or not ready to serve.
        `untyped`: a body without Content-Type is JSON too (v2 clients send none)."""
        if self.not_ready_reason:
            raise InputError(503, f"model is not ready: {self.not_ready_reason}")
        if request.headers.get("Inference-Header-Content-Length"):
            raise InputError(415, "binary tensor data is not supported; send the tensors as JSON")
        if request.mimetype != "application/json" and not (untyped and not request.mimetype):
            raise InputError(415, "Content-Type must be application/json")
        data = request.get_data()
        if request.content_length is None and len(data) >= self.max_body_bytes:
            raise RequestEntityTooLarge()  # werkzeug silently cuts a chunked body off at the limit
        return parse_json(data)

    def known_model(self, name: str, version: str | None = None) -> None:
        if name != self.model_name:
            raise InputError(
                404,
                f"unknown model '{name}'; this server serves '{self.model_name}'",
                "model_name",
            )
        if version is not None and version != self.model_version:
            raise InputError(
                404,
                f"unknown version '{version}' of '{name}'; this server serves "
                f"version {self.model_version}",
                "model_version",
            )


def health_and_metadata(app: Flask, s: Service) -> None:
    bundle, metadata = s.bundle, s.bundle.metadata

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = s.stats.exposition()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/ready")
    def ready():
        if s.not_ready_reason:
            return jsonify(status="not ready", error=s.not_ready_reason), 503
        return jsonify(status="ready", bundle_id=bundle.bundle_id)

    @app.get("/metadata")
    def model_metadata():
        return jsonify(
            model_version=s.model_version,
            registered_model=s.registry.get("model"),
            bundle_id=bundle.bundle_id,
            name=metadata.get("name"),
            task=metadata.get("task"),
            metrics=(metadata.get("evaluation") or {}).get("metrics"),
            data_hash=metadata.get("data_hash"),
            git_commit=metadata.get("git_commit"),
            created_at=metadata.get("created_at"),
            signing=metadata.get("signing"),  # algorithm and key id (the public key's fingerprint)
            # where `sail gate` logged the model card (MLflow)
            model_card=metadata.get("model_card"),
            outliers=outliers.described(metadata),  # detector, quantile, threshold, action
            schema=bundle.schema.to_dict(),
            inference=s.serving,
        )


def _explainer(s: Service) -> explain.Explainer | None:
    """`?explain=true`: the bundle's explainer (built on the first such request), or a 422 saying
    why there is none; None when the request does not ask."""
    wanted = request.args.get("explain", "false").lower()
    if wanted not in ("true", "false", "1", "0"):
        raise InputError(400, "the query parameter 'explain' must be true or false", "explain")
    if wanted in ("false", "0"):
        return None
    try:
        return explain.explainer(s.bundle)
    except explain.Unexplainable as exc:
        raise InputError(422, str(exc), "explain") from exc


def _too_extreme(exc: NonFiniteFeatures, n_records: int) -> InputError:
    """The STL turned a finite value into a non-finite feature: a 422 naming the field (and the
    record, in a request of several)."""
    return InputError(422, str(exc), exc.field, exc.rows[0] if n_records > 1 else None)


def predict_route(app: Flask, s: Service) -> None:
    @app.post("/predict")
    def predict() -> Response:
        columns = checked_columns(s.bundle.schema, s.json_body(), s.max_records)
        explainer = _explainer(s)
        predictions, probabilities = s.predict_columns(columns)
        body: dict[str, Any] = {
            "request_id": _request_id(),
            "model_version": s.model_version,
            "bundle_id": s.bundle.bundle_id,
            "predictions": predictions.tolist(),
        }
        if probabilities is not None:
            body["probabilities"] = [
                dict(zip(s.class_keys, row, strict=True)) for row in probabilities.tolist()
            ]
        body.update(s.outlier_outputs())
        if g.strays:
            body["out_of_range"] = [stray.to_dict() for stray in g.strays]
        if explainer is not None:
            try:  # scikit-learn's STL may overflow where the compiled graph's did not
                body["explanations"] = explain.explain(s.bundle, g.columns)
            except NonFiniteFeatures as exc:
                raise _too_extreme(exc, g.n_records) from exc
            check_explanations(body["explanations"], g.strays)
        return jsonify(body)


def mlflow_routes(app: Flask, s: Service) -> None:
    """MLflow's scoring protocol."""

    @app.get("/ping")
    def ping():
        if s.not_ready_reason:
            return _error(503, f"model is not ready: {s.not_ready_reason}")
        return Response("\n", status=200, mimetype="application/json")

    @app.get("/version")
    def version():
        return Response(_version(), mimetype="text/plain")

    @app.post("/invocations")
    def invocations():
        columns = protocols.mlflow_columns(s.bundle.schema, s.json_body(), s.max_records)
        predictions, _ = s.predict_columns(columns)
        return jsonify(protocols.mlflow_response(predictions))


def v2_routes(app: Flask, s: Service) -> None:
    """The Open Inference Protocol v2."""
    task = str(s.bundle.metadata.get("task"))
    v2_meta = protocols.v2_metadata(
        s.bundle.schema,
        s.model_name,
        s.model_version,
        protocols.PLATFORMS[s.bundle.runtime],
        task,
        s.bundle.classes,
        s.has_probabilities,
        outliers.described(s.bundle.metadata) is not None,
    )

    @app.get("/v2")
    def v2_server():
        return jsonify(name="sail-pipelines", version=_version(), extensions=[])

    @app.get("/v2/health/live")
    def v2_live():
        return jsonify(live=True)

    @app.get("/v2/health/ready")
    def v2_ready():
        return (jsonify(ready=True), 200) if not s.not_ready_reason else (jsonify(ready=False), 400)

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None):
        s.known_model(name, version)
        return jsonify(v2_meta)

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None):
        s.known_model(name, version)
        status = 400 if s.not_ready_reason else 200
        return jsonify(name=name, ready=not s.not_ready_reason), status

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None):
        s.known_model(name, version)
        body = s.json_body(untyped=True)
        columns, wanted = protocols.v2_columns(s.bundle.schema, body, s.max_records)
        predictions, probabilities = s.predict_columns(columns)
        ident = body.get("id") if isinstance(body.get("id"), str) else _request_id()
        return jsonify(
            protocols.v2_response(
                s.model_name,
                s.model_version,
                ident,
                task,
                predictions,
                probabilities,
                wanted,
                s.outlier_outputs(),
            )
        )


def error_handlers(app: Flask, s: Service) -> None:
    """Bad input is a 4xx JSON answer naming the problem; only our own faults are a 500."""

    @app.errorhandler(InputError)
    def input_error(exc: InputError):
        s.stats.refusal(exc.field)
        return _error(exc.status, exc.message, exc.field, exc.record)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        return _error(413, f"request body is larger than {s.max_body_bytes} bytes")

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


def request_hooks(app: Flask, s: Service) -> None:
    """Time every request; then count it, write the prediction log and the access log."""

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = _request_id()
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        s.stats.request(
            request.url_rule.rule if request.url_rule else "(unmatched)",
            response.status_code,
            elapsed,
        )
        if request.endpoint in PREDICTING and s.plog.wanted():
            scored: Prediction | None = g.get("scored")
            answer = None
            if scored:
                answer = prediction_log.outputs(scored[0], scored[1], s.class_keys)
                answer.update(s.outlier_outputs())
            s.plog.write(
                _request_id(),
                request.path,
                response.status_code,
                elapsed,
                g.get("columns"),
                answer,
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
