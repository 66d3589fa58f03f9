"""The server's own logs (inference/server_logs.py) on a real `sail serve`: JSON lines on stderr,
quiet under concurrent load on the scikit-learn path, warnings once per kind, the access log only
when asked for, and the request id of a line written inside a request."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import joblib
import pytest

from conftest import TEST_KEY
from sail_pipelines.inference import server_logs
from sail_pipelines.inference.serve import create_app
from sail_pipelines.inference.server_logs import ACCESS
from sail_pipelines.inference.smoke import KEY_VARIABLES, check, free_port, holdout_of, wait_ready
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import (
    METADATA,
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    load_bundle,
    read_verified,
    write_bundle,
)

# Every test here serves a trained project.
pytestmark = pytest.mark.slow
KEY = signing.private_key(TEST_KEY, "test")
CLIENTS, REQUESTS_EACH = 8, 100
MAX_STDERR_BYTES = 80_000  # for the 800 requests, with the defaults (100 bytes a request)
KEYS = {"time", "level", "message", "logger"}
# What scikit-learn says on every prediction when a model fitted on named columns gets an array.
NAMES_WARNING = "does not have valid feature names"


@pytest.fixture(scope="module")
def fallback(public_project, tmp_path_factory) -> tuple[Path, list[dict[str, Any]]]:
    """The weather project's random forest as a bundle scikit-learn serves (no compiled graph,
    as when it does not convert), whose model warns on every prediction; and request records
    (the accepted bundle's holdout rows: a date, a category with an "other" bucket, gaps)."""
    project = public_project("weather")
    files, _ = read_verified(project / "models" / "candidates" / "random_forest", KEY)
    metadata = json.loads(files.pop(METADATA))
    files.pop(ONNX_MODEL, None)
    metadata["inference"] = {"runtime": "sklearn", "reason": "forced: the log tests"}
    model = joblib.load(io.BytesIO(files[MODEL]))
    transformer = joblib.load(io.BytesIO(files[TRANSFORMER]))
    model.feature_names_in_ = transformer.get_feature_names_out()
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    files[MODEL] = buffer.getvalue()
    dest = tmp_path_factory.mktemp("fallback") / "bundle"
    write_bundle(dest, files, metadata, KEY)
    return dest, holdout_of(project / "models" / "accepted", KEY)["records"]


@contextlib.contextmanager
def serving(bundle: Path, stderr: Path, *flags: str) -> Iterator[int]:
    """`sail serve` on a free port with its stderr in a file; yields the port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env.pop("SAIL_ACCESS_LOG", None)
    env.update(signing.serving_env(KEY))
    command = [sys.executable, "-m", "sail_pipelines.cli", "serve", "--bundle", str(bundle)]
    with stderr.open("w") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", 90, proc)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def post_all(port: int, bodies: list[bytes], clients: int) -> list[tuple[int, str, str]]:
    """Every body once, spread over `clients` keep-alive connections at the same time:
    (status, X-Request-ID header, request_id of the body) per request."""
    answers: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def client(share: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in share:
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            with lock:
                answers.append(
                    (response.status, response.headers["X-Request-ID"], answer["request_id"])
                )
        connection.close()

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        assert KEYS <= line.keys(), line
    return lines


def test_concurrent_load_on_the_sklearn_path_writes_little_and_only_json(fallback, tmp_path):
    bundle, records = fallback
    assert load_bundle(bundle, KEY).runtime == "sklearn"
    bodies = [
        json.dumps(records[i % len(records)]).encode() for i in range(CLIENTS * REQUESTS_EACH)
    ]
    stderr = tmp_path / "stderr.log"
    with serving(bundle, stderr, "--workers", "2") as port:
        before = stderr.stat().st_size
        answers = post_all(port, bodies, CLIENTS)
        added = stderr.stat().st_size - before
    assert [status for status, _, _ in answers] == [200] * len(bodies)
    assert all(header == body for _, header, body in answers)
    assert added <= MAX_STDERR_BYTES, f"{added} bytes of stderr for {len(bodies)} requests"
    lines = json_lines(stderr)  # gunicorn's own lines too, start-up to shutdown
    assert any(line["message"].startswith("Booting worker") for line in lines)
    assert not [line for line in lines if line["logger"] == ACCESS]
    # the model warns on every prediction; the log says so once, with where it was raised
    warned = [line for line in lines if NAMES_WARNING in line["message"]]
    assert len(warned) == 1 and warned[0]["logger"] == "py.warnings", warned
    assert warned[0]["level"] == "WARNING" and "sklearn" in warned[0]["source"]


def test_the_access_log_is_written_only_when_asked_for(fallback, tmp_path):
    bundle, records = fallback
    bodies = [json.dumps(record).encode() for record in records[:4]] + [b'{"city": 1}']
    stderr = tmp_path / "stderr.log"
    with serving(bundle, stderr, "--workers", "1", "--access-log") as port:
        answers = post_all(port, bodies, 2)
    assert sorted(status for status, _, _ in answers) == [200] * 4 + [422]
    access = [line for line in json_lines(stderr) if line["logger"] == ACCESS]
    predicted = [line for line in access if line["path"] == "/predict"]
    # each request's line carries the id its response carries
    assert sorted(line["request_id"] for line in predicted) == sorted(b for _, _, b in answers)
    assert sorted(line["status"] for line in predicted) == [200] * 4 + [422]
    assert {line["message"] for line in predicted} == {"POST /predict 200", "POST /predict 422"}


def test_a_warning_inside_requests_is_logged_once_with_the_request_id(fallback):
    """Eight threads through the app, each prediction warning: one line, stamped with the id
    of the request it was raised in (the filter sets what the response then carries)."""
    bundle, records = fallback
    app = create_app(load_bundle(bundle, KEY))  # its warm-up warns before logging is set up
    stream = io.StringIO()
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in ("", "sail_pipelines", ACCESS)}
    answers: list[tuple[str, str]] = []

    def client() -> None:
        with app.test_client() as test_client:
            for record in records[:5]:
                response = test_client.post("/predict", json=record)
                answers.append(
                    (response.headers["X-Request-ID"], response.get_json()["request_id"])
                )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # repeats reach the log, as when registries reset
            server_logs.configure(stream=stream)
            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:  # the test process's logging as it was
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert len(answers) == CLIENTS * 5 and all(header == body for header, body in answers)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warned = [line for line in lines if NAMES_WARNING in line["message"]]
    assert len(warned) == 1, lines
    assert warned[0]["request_id"] in {body for _, body in answers}


def test_one_worker_serves_the_compiled_path_with_json_logs(pipeline_project, tmp_path):
    bundle = pipeline_project / "models" / "accepted"
    assert load_bundle(bundle, KEY).runtime == "onnx"
    stderr = tmp_path / "stderr.log"
    with serving(bundle, stderr, "--workers", "1") as port:
        check(f"http://127.0.0.1:{port}", holdout_of(bundle, KEY))
    lines = json_lines(stderr)
    assert [line["message"] for line in lines if "Booting worker" in line["message"]] != []
    assert not [line for line in lines if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
