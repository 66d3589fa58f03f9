"""The server's own logs: one JSON object per line on stderr, which a log platform parses as is.

gunicorn's lines, the app's and Python's warnings all go through one handler on the root
logger (python-json-logger's formatter): `time`, `level`, `message`, `logger`, and the
`request_id` of the request a line was written in. The access log is off unless asked for:
the prediction log already records every prediction, and a line per request is what fills
a disk. Warnings are logged once per kind per process: scikit-learn and pandas warn on every
prediction, and the warnings module's own once-only registry does not hold under threads
(every `catch_warnings` in another thread resets it), so a busy server would repeat them.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import uuid
import warnings
from typing import Any, TextIO

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

ACCESS = "sail_pipelines.inference.access"  # one line per request, when asked for
WARNINGS = "py.warnings"  # the logger `logging.captureWarnings` uses
# Kinds of warning logged per process at most: a warning that quotes request data is a new
# kind each time, and must not turn into a line per request.
MAX_WARNING_KINDS = 100
_NUMBERS = re.compile(r"\d+")


class RequestId(logging.Filter):
    """Stamps a line written inside a request with the request's id, the one its response
    carries (`g.request_id`, made here if the request has none yet)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flask import g, has_request_context

        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id") or g.setdefault("request_id", uuid.uuid4().hex)
        return True


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{message}{levelname}{name}",
            style="{",
            timestamp="time",  # ISO 8601, UTC
            rename_fields={"levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestId())
    return handler


class _OncePerKind:
    """`warnings.showwarning` that logs each kind of warning (its category and its message with
    the numbers blanked out) once, to the `py.warnings` logger, with where it was raised."""

    def __init__(self) -> None:
        self.seen: set[tuple[type[Warning], str]] = set()
        self.lock = threading.Lock()

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        kind = (category, _NUMBERS.sub("#", str(message)))
        with self.lock:
            if kind in self.seen or len(self.seen) > MAX_WARNING_KINDS:
                return
            self.seen.add(kind)
            full = len(self.seen) > MAX_WARNING_KINDS
        log = logging.getLogger(WARNINGS)
        if full:
            log.warning("more than %d kinds of warning; no more are logged", MAX_WARNING_KINDS)
            return
        log.warning("%s: %s", category.__name__, message, extra={"source": f"{filename}:{lineno}"})


def configure(access_log: bool = False, stream: TextIO | None = None) -> None:
    """JSON lines on stderr for the whole process, warnings once per kind; call before the
    workers fork, so each inherits it. gunicorn's own loggers join in through GunicornLogger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(stream))
    root.setLevel(logging.WARNING)  # other libraries: warnings and errors only
    logging.getLogger("sail_pipelines").setLevel(logging.INFO)
    logging.getLogger(ACCESS).setLevel(logging.INFO if access_log else logging.WARNING)
    if not isinstance(warnings.showwarning, _OncePerKind):
        warnings.showwarning = _OncePerKind()


def access(
    request_id: str, method: str, path: str, status: int, seconds: float, records: int
) -> None:
    """The access log's line for one request (dropped unless the access log is on)."""
    log = logging.getLogger(ACCESS)
    if log.isEnabledFor(logging.INFO):
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "records": records,
            "duration_ms": round(seconds * 1000, 3),
        }
        log.info("%s %s %s", method, path, status, extra=fields)


class GunicornLogger(glogging.Logger):
    """gunicorn's start-up, worker and error lines through the root's JSON handler instead of
    its own plain-text one. Its access log stays off: the app writes its own (`access`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True
