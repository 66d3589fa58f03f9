"""Reading prediction logs (inference/prediction_log.py) back as columns, for `sail monitor`.

A log is a file or a directory of them (rotated files included), local or on S3. Lines that are
not prediction lines (a container's stdout also carries gunicorn's access log) are passed over; a
prediction line that does not parse, a log without any, or a time filter that leaves nothing is a
one-line SailError naming the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sail_pipelines.errors import SailError

MARK = '{"time":'


@dataclass
class Traffic:
    """Served records as columns: one entry per record, whatever request carried it."""

    times: list[str] = field(default_factory=list)  # ISO 8601 UTC, sortable as text
    request_ids: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # the record's place in its request
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)
    probabilities: dict[str, list[float | None]] = field(default_factory=dict)
    outliers: list[bool | None] = field(default_factory=list)  # None: logged without a detector
    refused: int = 0  # requests answered with a 4xx
    requests: int = 0
    bundles: set[str] = field(default_factory=set)

    @property
    def rows(self) -> int:
        return len(self.predictions)


def parse_time(text: str, what: str) -> str:
    """An ISO 8601 time as the log writes it (UTC, milliseconds), for comparing as text."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SailError(
            f"{what} must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got {text!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def time_span(
    since: str | None, until: str | None, window: str | None, now: datetime | None = None
) -> tuple[str | None, str | None]:
    """--since/--until, or --window back from now, as log-comparable text."""
    if window and since:
        raise SailError("give --window or --since, not both")
    if window:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([mhd])", window.strip())
        if not match:
            raise SailError(
                f"--window must be a number of minutes, hours or days (30m, 24h, 7d), "
                f"got {window!r}"
            )
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        start = (now or datetime.now(timezone.utc)) - timedelta(**{unit: float(match.group(1))})
        since = start.isoformat()
    return (
        parse_time(since, "--since") if since else None,
        parse_time(until, "--until") if until else None,
    )


def _lines(source: str, s3: Callable[[], Any] | None) -> Iterator[tuple[str, int, str]]:
    if source.startswith("s3://"):
        if s3 is None:
            raise SailError(f"{source}: reading from S3 needs the project's AWS settings")
        yield from _s3_lines(source, s3())
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and ".jsonl" in p.name)
        if not files:
            raise SailError(f"{source}: no prediction log files (*.jsonl) in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise SailError(f"{source}: no such prediction log file or directory")
    for file in files:
        try:
            with open(file, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    yield str(file), number, line
        except OSError as exc:
            raise SailError(
                f"{file}: cannot read the prediction log: {exc.strerror or exc}"
            ) from exc


def _s3_lines(source: str, client: Any) -> Iterator[tuple[str, int, str]]:
    """Every object under an s3://bucket/prefix, in key order."""
    bucket, _, prefix = source[len("s3://") :].partition("/")
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        for key in sorted(keys):
            body = (
                client.get_object(Bucket=bucket, Key=key)["Body"]
                .read()
                .decode("utf-8", errors="replace")
            )
            for number, line in enumerate(body.splitlines(), 1):
                yield f"s3://{bucket}/{key}", number, line
    except Exception as exc:  # botocore's errors: credentials, no bucket, network
        raise SailError(f"{source}: cannot read from S3: {exc}") from exc


def _add_outputs(traffic: Traffic, outputs: dict[str, Any], n: int) -> None:
    """A line's class probabilities and outlier flags (None where it has none), before its
    predictions join `traffic`."""
    for cls, values in (outputs.get("probabilities") or {}).items():
        if cls not in traffic.probabilities:
            traffic.probabilities[cls] = [None] * traffic.rows
        traffic.probabilities[cls].extend(values)
    flags = outputs.get("outlier")
    if flags is not None and len(flags) != n:
        raise ValueError(f"'outlier' has {len(flags)} values for {n} predictions")
    traffic.outliers.extend([None] * n if flags is None else flags)


def read(
    source: str,
    since: str | None = None,
    until: str | None = None,
    s3: Callable[[], Any] | None = None,
) -> Traffic:
    """The records logged in [since, until) (ISO 8601 UTC text, as `parse_time` gives); `s3` makes
    the S3 client for an s3:// source (the project's AWS identity and endpoint)."""
    traffic = Traffic()
    lines = 0
    for where, number, line in _lines(source, s3):
        if not line.startswith(MARK):
            continue
        lines += 1
        try:
            entry = json.loads(line)
            moment = entry["time"]
            if (since and moment < since) or (until and moment >= until):
                continue
            traffic.requests += 1
            traffic.bundles.add(str(entry.get("bundle_id")))
            inputs, outputs = entry["inputs"], entry["outputs"]
            status, request_id = int(entry["status"]), entry["request_id"]
            if not outputs:
                if status < 400:
                    raise ValueError(f"status {status} without outputs")
                traffic.refused += status < 500
                continue
            predictions = outputs["prediction"]
            n = len(predictions)
            for name, values in inputs.items():
                column = traffic.inputs.get(name)
                if column is None:  # a column first seen here: earlier records did not log it
                    column = traffic.inputs[name] = [None] * traffic.rows
                if len(values) != n:
                    raise ValueError(f"'{name}' has {len(values)} values for {n} predictions")
                column.extend(values)
            if inputs.keys() != traffic.inputs.keys():
                for name, column in traffic.inputs.items():
                    if name not in inputs:
                        column.extend([None] * n)
            _add_outputs(traffic, outputs, n)
            traffic.predictions.extend(predictions)
            traffic.times.extend([moment] * n)
            traffic.request_ids.extend([request_id] * n)
            traffic.positions.extend(range(n))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = (
                "truncated or corrupted line"
                if isinstance(exc, json.JSONDecodeError)
                else f"not a prediction line ({exc})"
            )
            raise SailError(f"{where}:{number}: {problem}") from exc
    if not lines:
        raise SailError(
            f"{source}: no prediction log lines (empty, or not written by sail serve or "
            "sail predict)"
        )
    if not traffic.requests:
        raise SailError(f"{source}: no prediction logged in the chosen time span")
    return traffic
