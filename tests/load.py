"""Steady load on a URL from threads, counting every failed request: what the blue-green tests
and benchmarks/bluegreen.py put on the router during a switch.

Each of `concurrency` threads sends POSTs one after another, on a fresh connection each
(`keepalive=False`, `Connection: close`: every request is accepted anew, so it meets whichever
nginx workers are current) or on one kept-alive connection per thread, opened again after a
failure. A failure is an exception (refused, reset, closed early, timed out) or a status other
than 200; the first few are kept to show.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Counts:
    ok: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)
    bodies: dict[str, int] = field(default_factory=dict)  # a field of the answers -> count
    seconds: list[float] = field(default_factory=list)  # each answered request's latency
    answers: list[tuple[float, bytes]] = field(default_factory=list)  # (sent at, body), if kept


class Load:
    def __init__(
        self,
        url: str,
        body: Any,
        concurrency: int = 8,
        keepalive: bool = False,
        path: str = "/predict",
        tally: str | None = None,
        pause: float = 0.0,
        keep: bool = False,
    ):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path, self.body = path, json.dumps(body).encode()
        self.concurrency, self.keepalive, self.tally = concurrency, keepalive, tally
        self.pause = pause  # seconds each thread waits between requests (0: none)
        self.keep = keep  # keep each answer's body with the time.monotonic() it was sent at
        self.counts = Counts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _one(self, connection: http.client.HTTPConnection, started: float) -> str | None:
        headers = {"Content-Type": "application/json"}
        if not self.keepalive:
            headers["Connection"] = "close"
        connection.request("POST", self.path, body=self.body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            return f"HTTP {response.status}: {data[:120]!r}"
        if self.tally:
            value = str(json.loads(data).get(self.tally))
            with self._lock:
                self.counts.bodies[value] = self.counts.bodies.get(value, 0) + 1
        if self.keep:
            with self._lock:
                self.counts.answers.append((started, data))
        return None

    def _worker(self) -> None:
        connection = None
        while not self._stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            started = time.monotonic()
            try:
                error = self._one(connection, started)
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error or not self.keepalive:
                connection.close()
                connection = None
            with self._lock:
                if error:
                    self.counts.failed += 1
                    if len(self.counts.examples) < 5:
                        self.counts.examples.append(error)
                else:
                    self.counts.ok += 1
                    self.counts.seconds.append(time.monotonic() - started)
            if self.pause:
                self._stop.wait(self.pause)
        if connection is not None:
            connection.close()

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._worker, daemon=True) for _ in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, requests: int, timeout: float = 60) -> None:
        """Until at least `requests` were answered (load is running before the deploy starts)."""
        deadline = time.monotonic() + timeout
        while self.counts.ok + self.counts.failed < requests and time.monotonic() < deadline:
            time.sleep(0.05)
