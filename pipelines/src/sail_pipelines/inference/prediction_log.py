"""The prediction log: one JSON line per served request or scored batch, for `sail monitor`.

A line holds what the model saw (the checked feature columns, without the schema's `log: false`
columns, which are personal data and never written), what it answered and the values it was
flagged or refused for (`out_of_range`: beyond the training limits), with the time, the
request id, the model, its version and bundle id, the latency and the HTTP status; a refused
request is logged with its status and no outputs. Lines go through a stdlib logger of their own:
to stdout ("-"), to one file shared by all workers (appended, reopened when logrotate moves it),
or to a directory where each process writes its own size-rotated file, so concurrent gunicorn
workers never rotate a file under each other. `sample` keeps that share of requests (0..1).
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import random
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from sail_pipelines.errors import SailError

ENV_DESTINATION = "SAIL_PREDICTION_LOG"
ENV_SAMPLE = "SAIL_PREDICTION_LOG_SAMPLE"
ROTATE_BYTES = 100 * 1024 * 1024
ROTATE_KEEP = 10


@dataclass(frozen=True)
class LogSettings:
    destination: str | None = None  # None: no log; "-": stdout; a path: a file, or a directory
    sample: float = 1.0


def settings_from(
    destination: str | None = None,
    sample: str | float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> LogSettings:
    """Flags win over the environment; a bad sampling rate is one line, not a traceback."""
    destination = destination or environ.get(ENV_DESTINATION) or None
    raw = sample if sample is not None else environ.get(ENV_SAMPLE, "1")
    try:
        rate = float(raw)
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise SailError(f"prediction log sampling rate must be a number from 0 to 1, got {raw!r}")
    if destination and destination != "-":
        _check_writable(Path(destination))
    return LogSettings(destination, rate)


def _check_writable(path: Path) -> None:
    """Refused here, in one line, rather than by every worker as it starts."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the handler creates the missing folders
    writable = folder.is_dir() and os.access(folder, os.W_OK)
    if not writable or (path.is_file() and not os.access(path, os.W_OK)):
        raise SailError(
            f"cannot write the prediction log to {path}: {folder} is not a writable folder"
        )


class _SharedStdout(logging.StreamHandler):
    """stdout, which every gunicorn worker shares: a pipe takes a write of more than 4 kB
    (PIPE_BUF) in pieces, and another worker's line may land between them (a batch of 20 rows
    is a 6 kB line). Each line is written under a lock file the workers share (named by their
    parent, the master); without one, lines up to 4 kB are still whole."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        path = Path(tempfile.gettempdir()) / f"sail-prediction-log-{os.getppid()}.lock"
        try:
            self.lock_fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            self.lock_fd = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.lock_fd is None:
            return super().emit(record)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            super().emit(record)
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)


def _handler(destination: str) -> logging.Handler:
    if destination == "-":
        return _SharedStdout()
    path = Path(destination)
    if path.is_dir() or destination.endswith(os.sep):
        path.mkdir(parents=True, exist_ok=True)
        name = f"predictions-{socket.gethostname()}-{os.getpid()}.jsonl"
        return logging.handlers.RotatingFileHandler(
            path / name, maxBytes=ROTATE_BYTES, backupCount=ROTATE_KEEP, encoding="utf-8"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return logging.handlers.WatchedFileHandler(path, encoding="utf-8")


class _Verbatim(logging.Formatter):
    """The line is the message, already JSON: no formatting pass per line."""

    def format(self, record: logging.LogRecord) -> str:
        return record.msg


class PredictionLog:
    """Writes prediction lines for one model; made in each serving process (after the fork)."""

    def __init__(
        self, settings: LogSettings, metadata: Mapping[str, Any], bundle_id: str, logged: list[str]
    ):
        registry = metadata.get("registry") or {}
        head = {
            "model": registry.get("model") or metadata.get("name"),
            "version": registry.get("version"),
            "bundle_id": bundle_id,
        }
        self.head = json.dumps(head, default=str)[1:-1]  # encoded once: every line repeats it
        self.logged = logged
        self.sample = settings.sample
        self.handler = None
        if settings.destination:
            try:
                self.handler = _handler(settings.destination)
            except OSError as exc:
                raise SailError(
                    f"cannot write the prediction log to {settings.destination}: "
                    f"{exc.strerror or exc}"
                ) from exc
            self.handler.setFormatter(_Verbatim())
        # A logger would walk the stack and build a record per line, as long as the request itself
        # on a compiled model; the handler (rotation, reopening) gets one reused record instead.
        self.record = logging.LogRecord(
            "sail.predictions", logging.INFO, __file__, 0, "", None, None
        )
        self.lock = threading.Lock()

    def wanted(self) -> bool:
        return self.handler is not None and (self.sample >= 1.0 or random.random() < self.sample)

    def write(
        self,
        request_id: str,
        route: str,
        status: int,
        latency: float,
        columns: Mapping[str, list[Any]] | None,
        outputs: Mapping[str, Any] | None,
        out_of_range: Iterable[Any] = (),
    ) -> None:
        """One line; the caller checks `wanted()` first so skipped requests cost nothing.
        `out_of_range`: the values beyond the training limits (`ranges.Beyond`), flagged or
        refused."""
        inputs = None if columns is None else {k: columns[k] for k in self.logged if k in columns}
        text = (
            f'{{"time":"{datetime.now(timezone.utc).isoformat(timespec="milliseconds")}",'
            f'"request_id":{json.dumps(request_id)},{self.head},"route":{json.dumps(route)},'
            f'"status":{status},"latency_ms":{latency * 1000:.3f},'
            f'"inputs":{json.dumps(inputs, default=str)},'
            f'"outputs":{json.dumps(outputs, default=str)},'
            f'"out_of_range":{json.dumps([self._flag(b) for b in out_of_range], default=str)}}}'
        )
        assert self.handler is not None  # the caller checked wanted()
        with self.lock:
            self.record.msg = text
            self.handler.handle(self.record)

    def _flag(self, stray: Any) -> dict[str, Any]:
        """A flagged value, without the value itself when its column is not logged."""
        flag = stray.to_dict()
        if stray.field not in self.logged:
            del flag["value"]
        return flag


def outputs(predictions: Any, probabilities: Any, classes: list[str]) -> dict[str, Any]:
    """The model's answer as columns: `prediction`, and one probability list per class."""
    out: dict[str, Any] = {"prediction": predictions.tolist()}
    if probabilities is not None:
        out["probabilities"] = dict(zip(classes, probabilities.T.tolist(), strict=True))
    return out


def for_bundle(settings: LogSettings, bundle: Any) -> PredictionLog:
    schema = bundle.schema
    return PredictionLog(
        settings, bundle.metadata, bundle.bundle_id, [c.name for c in schema.features if c.log]
    )
