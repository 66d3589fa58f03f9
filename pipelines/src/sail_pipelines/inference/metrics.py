"""Prometheus metrics of the prediction API, summed over every gunicorn worker.

Each worker writes its numbers to memory-mapped files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's
multiprocess mode) and /metrics, answered by any worker, adds up the files of all of them, those of
dead workers included, so a killed worker never takes its counts with it. The mode is chosen when
prometheus_client is first imported, so `run_server` sets the directory up before anything imports
it (this module imports it lazily); a process without the variable (tests, `create_app` alone)
counts its own requests only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
VALUE_BUCKETS = 10  # regression: equal-width buckets over the training target's range


def prepare_multiprocess_dir() -> Path | None:
    """The directory shared by the workers, emptied of a previous run's files; a temporary one
    (returned, for removal at exit) when the operator set none."""
    given = os.environ.get(ENV_DIR)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="sail-metrics-"))
    os.environ[ENV_DIR] = str(made)
    return made


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live gauges go; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _value_buckets(metadata: Mapping[str, Any], target: str) -> tuple[float, ...]:
    stats = (metadata.get("training_profile") or {}).get("columns", {}).get(target, {})
    low, high = stats.get("min"), stats.get("max")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and high > low):
        return (0.0, 1.0, 10.0, 100.0, 1000.0)
    step = (high - low) / VALUE_BUCKETS
    return tuple(low + i * step for i in range(VALUE_BUCKETS + 1))


class Metrics:
    """The API's metrics, in a registry of their own so that several apps in one process (tests)
    do not clash; in multiprocess mode the registry is bypassed and the files are what counts."""

    def __init__(self, metadata: Mapping[str, Any], bundle_id: str, runtime: str, target: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sail_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "sail_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "sail_refused_inputs", "Refused prediction requests by field", ["field"], registry=r
        )
        self.out_of_range = Counter(
            "sail_out_of_range_values",
            "Served values outside the training range by feature",
            ["feature"],
            registry=r,
        )
        self.records = Counter("sail_records", "Records scored", registry=r)
        self.outliers_seen = Counter(
            "sail_outliers", "Records the outlier detector flagged (refused ones too)", registry=r
        )
        self.classes = Counter("sail_predictions", "Predictions by class", ["cls"], registry=r)
        self.values = Histogram(
            "sail_prediction_value",
            "Predicted values (regression)",
            buckets=_value_buckets(metadata, target),
            registry=r,
        )
        info = Gauge(
            "sail_model_info",
            "The model this server serves",
            ["model", "version", "bundle_id", "runtime"],
            multiprocess_mode="max",
            registry=r,
        )
        registry = metadata.get("registry") or {}
        info.labels(
            str(registry.get("model") or metadata.get("name")),
            str(registry.get("version")),
            bundle_id,
            runtime,
        ).set(1)
        self.classification = metadata.get("task") == "classification"

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def scored(self, predictions: Iterable[Any], strays: Iterable[Any]) -> None:
        predictions = list(predictions)
        self.records.inc(len(predictions))
        if self.classification:
            counts: dict[str, int] = {}
            for label in predictions:
                counts[str(label)] = counts.get(str(label), 0) + 1
            for label, n in counts.items():
                self.classes.labels(label).inc(n)
        else:
            for value in predictions:
                self.values.observe(float(value))
        for stray in strays:
            self.out_of_range.labels(stray.field).inc()

    def outliers(self, found: Any) -> None:
        """Count the flagged records of a request or batch chunk (`outliers.Outliers` or None)."""
        if found is not None and found.flags.any():
            self.outliers_seen.inc(int(found.flags.sum()))

    def refusal(self, field: str | None) -> None:
        self.refused.labels(field or "(request)").inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
            multiprocess,
        )

        if os.environ.get(ENV_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
