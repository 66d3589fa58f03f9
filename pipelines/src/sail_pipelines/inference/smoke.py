"""Serving smoke test: the holdout rows that travel with the accepted model must come back
from the live API with exactly the predictions the metric step computed.

The server under test (a child `sail serve`, or the inference container) gets the verify key
alone (signing.serving_env): no private key reaches a serving process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from sail_pipelines.errors import SailError
from sail_pipelines.integrity.bundle import HOLDOUT, holdout_mismatches, read_verified
from sail_pipelines.integrity.signing import VerifyKey, serving_env
from sail_pipelines.polling import wait_until

# Keys a server under test must not inherit: it gets the one it needs from serving_env.
KEY_VARIABLES = (
    "SAIL_SIGNING_KEY",
    "SAIL_VERIFY_KEY",
    "SAIL_AUDIT_KEY",
    "SAIL_AUDIT_VERIFY_KEY",
    "SAIL_ALLOW_DEV_KEY",
)


def answers_ready(base_url: str) -> bool:
    """/ready answers 200 (a server still starting refuses the connection or answers 503)."""
    try:
        return requests.get(f"{base_url}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_ready(base_url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Seconds until /ready answers 200; fails if the server process dies first."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise SailError(f"the server exited with code {proc.returncode} before it was ready")
        return answers_ready(base_url)

    return wait_until(
        ready, timeout, 0.1, lambda: SailError(f"{base_url} was not ready within {timeout:.0f}s")
    )


def check(base_url: str, holdout: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    ready = wait_ready(base_url, timeout)
    response = requests.post(f"{base_url}/predict", json=holdout["records"], timeout=30)
    if response.status_code != 200:
        raise SailError(
            f"smoke test: /predict answered {response.status_code}: {response.text[:200]}"
        )
    served = response.json()["predictions"]
    mismatches = holdout_mismatches(served, holdout["predictions"])
    if mismatches:
        raise SailError(
            "smoke test: served predictions differ from the metric step's at rows "
            f"{mismatches[:10]}"
        )
    bad = requests.post(
        f"{base_url}/predict",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    if not 400 <= bad.status_code < 500:
        raise SailError(f"smoke test: malformed JSON got {bad.status_code}, expected a 4xx")
    if requests.get(f"{base_url}/health", timeout=5).status_code != 200:
        raise SailError("smoke test: /health failed after the bad request")
    return {
        "ready_seconds": round(ready, 2),
        "rows": len(served),
        "matched": True,
        "bad_input_status": bad.status_code,
    }


def holdout_of(bundle_dir: Path, key: VerifyKey) -> dict[str, Any]:
    files, _ = read_verified(bundle_dir, key)
    if HOLDOUT not in files:
        raise SailError(
            f"{bundle_dir} carries no {HOLDOUT}: only a bundle accepted by the gate can be "
            "smoke-tested"
        )
    return json.loads(files[HOLDOUT])


def packaged_image(reports: Path) -> str:
    """The inference image `sail package` built last."""
    package = reports / "package.json"
    if not package.is_file():
        raise SailError("no inference image: run `sail package` first (or pass --image)")
    return json.loads(package.read_text())["image"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_server(bundle_dir: Path, key: VerifyKey, workers: int = 1) -> Iterator[str]:
    """`sail serve` in a child process on a free loopback port; always stopped afterwards, with
    its workers: the server has a session of its own, and a master that does not stop within 20 s
    is killed with its whole process group (a hung worker would otherwise outlive it).

    Its stderr goes to a file, not a pipe nobody drains (with the access log on, a full pipe
    would block the workers after a few thousand requests)."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}, **serving_env(key)}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sail_pipelines.cli",
                "serve",
                "--bundle",
                str(bundle_dir),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env=env,
            start_new_session=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_ready(base_url, 60, proc)
            except SailError as exc:
                if proc.poll() is not None:
                    log.seek(0)
                    last = log.read().strip().splitlines()
                    raise SailError(
                        f"`sail serve` failed: {last[-1] if last else proc.returncode}"
                    ) from exc
                raise
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # workers left behind, or a hung master
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def container_server(
    image: str, env: dict[str, str], timeout: float = 60
) -> Iterator[tuple[str, float]]:
    """The inference image on a free loopback port (host networking); yields the URL and the
    seconds from `docker run` to /ready. The container is always removed afterwards."""
    from sail_pipelines.clients import containers

    client = containers.docker_client()
    port = free_port()
    started = time.monotonic()
    container = containers.start(
        client,
        image,
        [],
        [],
        {**env, "SAIL_HOST": "127.0.0.1", "SAIL_PORT": str(port)},
        Path("/app"),
        {"sail.step": "smoke"},
    )
    base_url = f"http://127.0.0.1:{port}"

    def failed(state: str) -> SailError:
        logs = container.logs().decode(errors="replace").strip().splitlines()
        return SailError(f"{image} {state}: {logs[-1] if logs else 'no output'}")

    def ready() -> bool:
        if answers_ready(base_url):
            return True
        container.reload()
        if container.status == "exited":
            raise failed("exited")
        return False

    try:
        left = timeout - (time.monotonic() - started)
        wait_until(ready, left, 0.05, lambda: failed(f"not ready within {timeout:.0f}s"))
        yield base_url, time.monotonic() - started
    finally:
        container.remove(force=True)


def run(
    bundle_dir: Path, key: VerifyKey, url: str | None = None, image: str | None = None
) -> dict[str, Any]:
    holdout = holdout_of(bundle_dir, key)
    if url:
        return check(url.rstrip("/"), holdout)
    if image:
        with container_server(image, serving_env(key)) as (base_url, cold_start):
            return {
                "image": image,
                "url": base_url,
                "cold_start_seconds": round(cold_start, 2),
                **check(base_url, holdout),
            }
    with local_server(bundle_dir, key) as base_url:
        return {"url": base_url, **check(base_url, holdout)}
