"""Prediction-log sampling at a rate between 0 and 1, where it is served: `sail serve --workers 2`
(gunicorn) logging to a folder at a rate of 0.25 over 2,000 requests. Each worker writes a file
of its own, whose line count is within a binomial bound of a quarter of the requests that worker
served (read from its Prometheus counter file); every line is whole JSON with the id of a request
that was answered. Forked processes draw their own samples, never the same ones."""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

# Imported with the module, before a test sets PROMETHEUS_MULTIPROC_DIR: prometheus_client picks
# its value class once, at its first import, and a multiprocess one left behind would break the
# in-process metrics of every later test in this worker (seen: test_gate's model card).
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from sail_pipelines.inference.prediction_log import LogSettings
from sail_pipelines.inference.serve import create_app
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle
from test_prediction_log import GOOD, SECRET, write_test_bundle

RATE = 0.25
REQUESTS = 2000
SDS = 5.0  # a false failure at 5 standard deviations: about 6e-7 per comparison


def binomial_bound(n: int, p: float, sds: float = SDS) -> tuple[float, float]:
    """The counts a Binomial(n, p) falls within `sds` standard deviations of its mean."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sds * sd, mean + sds * sd


def within_bound(count: int, n: int, p: float, sds: float = SDS) -> bool:
    low, high = binomial_bound(n, p, sds)
    return low <= count <= high


def record(i: int) -> dict:
    """Request `i`: x1 tells it apart in the log (inside the training range, never flagged)."""
    return {**GOOD, "x1": i / 1000, "color": "ab"[i % 2]}


# --- the bound itself, and that it can fail -------------------------------------------------------


def test_the_bound_at_a_quarter_of_2000():
    low, high = binomial_bound(REQUESTS, RATE)
    assert math.isclose(high - 500, 5 * math.sqrt(375))  # sd about 19.4
    assert within_bound(500, REQUESTS, RATE) and within_bound(int(low) + 1, REQUESTS, RATE)
    assert not within_bound(int(high) + 1, REQUESTS, RATE)
    assert not within_bound(math.floor(low) - 1, REQUESTS, RATE)


@pytest.mark.parametrize(("drawn_at", "accepted"), [(0.25, True), (0.5, False), (0.15, False)])
def test_the_bound_rejects_counts_drawn_at_another_rate(drawn_at, accepted):
    """Counts drawn at 0.5 (every other request) or 0.15 fail the check the served log passes."""
    counts = np.random.default_rng(27).binomial(REQUESTS, drawn_at, size=20)
    assert all(within_bound(int(c), REQUESTS, RATE) == accepted for c in counts), counts


# --- forked processes sample independently -----------------------------------------------------


def _serve_in_child(bundle_dir: str, key: object, folder: str, reseed: bool) -> None:
    """What a gunicorn worker does after the fork: build the app, answer requests."""
    if reseed:  # the mutation: every process seeded alike
        random.seed(7)
    bundle = load_bundle(Path(bundle_dir), key)
    client = create_app(bundle, log_settings=LogSettings(folder, sample=0.5)).test_client()
    for i in range(64):
        assert client.post("/predict", json=record(i)).status_code == 200


def _logged_requests(path: Path) -> frozenset[float]:
    return frozenset(json.loads(line)["inputs"]["x1"][0] for line in path.read_text().splitlines())


@pytest.mark.parametrize("reseed", [False, True], ids=["as-served", "mutation-same-seed"])
def test_forked_processes_sample_different_requests(served_bundle, tmp_path, reseed):
    """Two forked processes answer the same 64 requests at a rate of 0.5: they log different
    ones (the same choice by chance: 2**-64). Seeded alike, they would log the same ones, and
    the check sees it."""
    bundle_dir, key = served_bundle
    folder = tmp_path / "logs"
    folder.mkdir()
    fork = multiprocessing.get_context("fork")
    children = [
        fork.Process(target=_serve_in_child, args=(str(bundle_dir), key, str(folder), reseed))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [c.exitcode for c in children] == [0, 0]
    files = sorted(folder.iterdir())
    assert {f.name.rsplit("-", 1)[1] for f in files} == {f"{c.pid}.jsonl" for c in children}
    first, second = (_logged_requests(f) for f in files)
    assert (first == second) is reseed, (sorted(first), sorted(second))


# --- the real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory):
    signer = signing.generate()
    bundle = write_test_bundle(tmp_path_factory.mktemp("sampling") / "bundle", signer)
    return bundle, signer.verify_key


def _post(port: int, i: int) -> str:
    """One request on a connection of its own (so both workers take some); its request id."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/predict",
            body=json.dumps(record(i)),
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, body
    assert response.getheader("X-Request-ID") == body["request_id"]
    return body["request_id"]


def _served_by_worker(shared: Path, scratch: Path) -> dict[int, int]:
    """The /predict requests each worker answered, from its own counter file."""
    served = {}
    for db in shared.glob("counter_*.db"):
        pid = int(db.stem.split("_")[1])
        alone = scratch / str(pid)
        alone.mkdir(parents=True)
        shutil.copy(db, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        labels = {"route": "/predict", "status": "200"}
        count = registry.get_sample_value("sail_requests_total", labels) or 0
        if count:
            served[pid] = int(count)
    return served


def _read_log(path: Path) -> list[dict]:
    """Every line whole: one JSON object per newline-ended line, never two run together."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"{path.name} ends in a torn line"
    lines = text.splitlines()
    assert all(line.count('{"time":') == 1 for line in lines), f"{path.name} has merged lines"
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_two_workers_log_a_quarter_of_2000_requests_to_a_file_each(
    served_bundle, tmp_path, monkeypatch
):
    bundle_dir, key = served_bundle
    folder = tmp_path / "predictions"
    shared = tmp_path / "multiproc"
    # inherited by the server: the log, its rate, and counter files we can read per worker
    monkeypatch.setenv("SAIL_PREDICTION_LOG", f"{folder}/")
    monkeypatch.setenv("SAIL_PREDICTION_LOG_SAMPLE", str(RATE))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with local_server(bundle_dir, key, workers=2) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with ThreadPoolExecutor(max_workers=8) as pool:
            sent = list(pool.map(lambda i: _post(port, i), range(REQUESTS)))
    assert len(set(sent)) == REQUESTS

    served = _served_by_worker(shared, tmp_path / "per-worker")
    assert len(served) == 2 and sum(served.values()) == REQUESTS, served
    files = {int(f.stem.rsplit("-", 1)[1]): f for f in folder.glob("predictions-*.jsonl")}
    assert sorted(files) == sorted(served), (sorted(files), served)  # a file per worker, its own

    logged: list[dict] = []
    for pid, path in files.items():
        lines = _read_log(path)
        assert within_bound(len(lines), served[pid], RATE), (
            f"worker {pid}: {len(lines)} lines, {served[pid]} served"
        )
        logged += lines
    total = len(logged)
    assert within_bound(total, REQUESTS, RATE), f"{total} lines for {REQUESTS} requests"
    ids = [line["request_id"] for line in logged]
    assert len(set(ids)) == len(ids), "a request logged twice"
    assert set(ids) <= set(sent), "a logged id no request was answered with"
    assert {(line["route"], line["status"]) for line in logged} == {("/predict", 200)}
    assert all("income" not in line["inputs"] for line in logged)
    assert str(SECRET) not in "".join(p.read_text() for p in files.values())
