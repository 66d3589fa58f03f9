"""The prediction API: a verified bundle behind Flask, run by gunicorn.

Every request body is parsed and checked against the bundle's own feature schema before
the model sees it, so any bad input gets a 4xx JSON answer naming the problem and the
worker keeps serving; the catch-all 500 handler is only for faults of our own. Besides
/predict it speaks MLflow's scoring protocol and the Open Inference Protocol v2
(`protocols.py`). A compiled bundle is served by ONNX Runtime from plain arrays: neither
pandas nor scikit-learn is imported. The routes are in routes.py; this module builds the app
and runs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

from flask import Flask
from gunicorn.app.base import BaseApplication

from sail_pipelines.contract.ranges import refuses
from sail_pipelines.inference import (
    metrics,
    model,
    outliers,
    page,
    prediction_log,
    routes,
    server_logs,
)
from sail_pipelines.inference.requests import records_to_columns, warm_up_record
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import VerifyKey


def runtime_info(bundle: LoadedBundle) -> dict[str, Any]:
    """Which runtime serves and, when scikit-learn does, why the compiled model does not."""
    inference = bundle.metadata.get("inference") or {}
    reason = None
    if bundle.runtime != "onnx":
        reason = inference.get("reason") or "the bundle carries no compiled model"
    return {"runtime": bundle.runtime, "reason": reason, "agreement": inference.get("agreement")}


def _warm_up(app: Flask, bundle: LoadedBundle) -> tuple[str | None, Any]:
    """Prove the model answers before calling ourselves ready, not on the first real request:
    why it is not ready (None when it is), and the warm-up's probabilities."""
    schema = bundle.schema
    try:
        (_, warm_probabilities), _ = outliers.predict(  # the outlier detector too
            bundle, records_to_columns(schema, [warm_up_record(schema, bundle.metadata)])
        )
        return None, warm_probabilities
    except Exception as exc:  # any failure means the bundle cannot serve; /ready says why
        app.logger.exception("warm-up prediction failed")
        return f"warm-up prediction failed: {type(exc).__name__}", None


def create_app(
    bundle: LoadedBundle,
    max_records: int = 1000,
    max_body_bytes: int = 1_000_000,
    log_settings: prediction_log.LogSettings | None = None,
) -> Flask:
    """Build the API around an already verified bundle (a bad schema raises SailError here)."""
    metadata = bundle.metadata
    serving = runtime_info(bundle)
    refuse_out_of_range = refuses(metadata)
    plog = prediction_log.for_bundle(log_settings or prediction_log.LogSettings(), bundle)
    stats = metrics.Metrics(metadata, bundle.bundle_id, bundle.runtime, bundle.schema.target.name)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.logger.setLevel(logging.INFO)
    not_ready_reason, warm_probabilities = _warm_up(app, bundle)
    service = routes.Service(
        bundle,
        max_records,
        max_body_bytes,
        refuse_out_of_range,
        plog,
        stats,
        serving,
        not_ready_reason,
        warm_probabilities is not None,
    )
    routes.health_and_metadata(app, service)
    routes.predict_route(app, service)
    routes.mlflow_routes(app, service)
    routes.v2_routes(app, service)
    # /openapi.json, / and /docs
    page.register(app, bundle, service.model_name, max_records, max_body_bytes)
    routes.error_handlers(app, service)
    routes.request_hooks(app, service)
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


# An idle client connection is closed after this long; a proxy in front (the local router,
# clients/router.py) must close its idle ones sooner.
KEEPALIVE_SECONDS = 5
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
        model.serve_single_threaded(bundle)
        with contextlib.suppress(Exception):  # a failure shows in each worker's /ready
            warm_up = records_to_columns(schema, [warm_up_record(schema, bundle.metadata)])
            outliers.predict(bundle, warm_up)
    bind_host = f"[{host}]" if ":" in host else host
    made_dir = metrics.prepare_multiprocess_dir()  # before any worker imports prometheus_client
    options = {
        "bind": f"{bind_host}:{port}",
        "workers": workers or worker_count(),
        # Threads keep client connections alive (a sync worker closes each one), which doubles
        # the requests a worker answers; ONNX Runtime sessions are safe to run from threads.
        "worker_class": "gthread",
        "threads": 4,
        "keepalive": KEEPALIVE_SECONDS,
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
