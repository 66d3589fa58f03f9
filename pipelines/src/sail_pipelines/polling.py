"""Waiting and retrying, in one place, so every ready-wait and retry behaves alike.

`wait_until` asks a check until it says yes or time runs out (a server coming up); `retry` runs
an action again after a pause, but only on the errors that may pass (a remote that is briefly
down, a table another worker is creating).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    interval: float,
    timed_out: Callable[[], Exception],
) -> float:
    """Seconds until `ready()` is true, asked every `interval` s. `ready` raises to stop early (a
    server that died will never answer); after `timeout` s, `timed_out()` is raised."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if ready():
            return time.monotonic() - start
        time.sleep(interval)
    raise timed_out()


def retry(
    action: Callable[[], T],
    attempts: int,
    pause: Callable[[int], float],
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """`action()`'s result, trying up to `attempts` times. After failure n (from 1) with a
    `retry_on` error, `on_retry(n, error, seconds)` is told and `pause(n)` seconds pass; other
    errors, and the last failure, propagate unchanged."""
    for attempt in range(1, attempts):
        try:
            return action()
        except retry_on as exc:
            seconds = pause(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, seconds)
            time.sleep(seconds)
    return action()
