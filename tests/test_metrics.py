"""/metrics as a real Prometheus server sees it: `sail serve --workers 2` scraped every second,
the totals read back through Prometheus' HTTP API, across workers and a worker killed mid-run;
and the template's alerting rules pass `promtool check rules`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from ci_rules import missing
from conftest import bake
from sail_pipelines.inference.smoke import free_port, local_server, wait_ready
from sail_pipelines.integrity import signing
from test_prediction_log import GOOD, write_test_bundle

PREDICT_OK = 'sum(sail_requests_total{route="/predict",status="200"})'


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(
            f"{name} is not installed (Debian package prometheus; docker/prepare-machine installs "
            "it)"
        )
    return path


@contextlib.contextmanager
def prometheus(target: str, storage: Path) -> Iterator[str]:
    """A Prometheus server on loopback scraping `target` every second; always stopped."""
    binary = _tool("prometheus")
    port = free_port()
    config = storage / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: sail, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    with open(storage / "prometheus.log", "w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={storage / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (
                storage / "prometheus.log"
            ).read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def query(url: str, expr: str) -> float | None:
    result = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"][
        "result"
    ]
    return float(result[0]["value"][1]) if result else None


def scraped(url: str, expr: str, want: float, timeout: float = 30) -> float | None:
    """The value once Prometheus has scraped `want` (or the last one seen at the timeout)."""
    deadline = time.monotonic() + timeout
    while (got := query(url, expr)) != want and time.monotonic() < deadline:
        time.sleep(0.5)
    return got


def fresh(url: str, expr: str, after: float, timeout: float = 30) -> float | None:
    """`expr` once Prometheus has scraped the target again after `after` (Unix seconds, this
    host's clock): never a value from a scrape taken before then."""
    deadline = time.monotonic() + timeout
    while (query(url, 'max(timestamp(up{job="sail"}))') or 0) <= after:
        assert time.monotonic() < deadline, f"no scrape after {after} within {timeout}s"
        time.sleep(0.5)
    assert query(url, 'min(up{job="sail"})') == 1
    return query(url, expr)


def workers_of(port: int) -> list[int]:
    """The gunicorn worker pids of the `sail serve` on `port` (the master's children, same
    command)."""
    serving = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and f"--port\0{port}\0" in (proc / "cmdline").read_text():
                serving[int(proc.name)] = int(
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    return [pid for pid, parent in serving.items() if parent in serving]


def post_each(base_url: str, records: list[dict], n: int) -> None:
    for i in range(n):  # a new connection each: both workers take some
        assert (
            requests.post(
                f"{base_url}/predict", json=records[i % len(records)], timeout=10
            ).status_code
            == 200
        )


@pytest.mark.slow
def test_prometheus_sums_two_workers_and_keeps_a_killed_workers_counts(tmp_path, monkeypatch):
    signer = signing.generate()
    bundle = write_test_bundle(tmp_path / "bundle", signer)
    key = signer.verify_key
    records = [GOOD, {**GOOD, "x1": -1.0, "color": "b"}]
    shared = tmp_path / "multiproc"
    # the server inherits it: we can look inside
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with (
        local_server(bundle, key, workers=2) as base_url,
        prometheus(base_url.split("//")[1], tmp_path) as prom,
    ):
        port = int(base_url.rsplit(":", 1)[1])
        first = workers_of(port)
        assert len(first) == 2
        post_each(base_url, records, 30)
        assert scraped(prom, PREDICT_OK, 30) == 30
        assert len(list(shared.glob("counter_*.db"))) == 2  # both workers counted requests

        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(set(workers_of(port)) - set(first)) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # gunicorn replaces the killed worker
        wait_ready(base_url, 30)
        # no reset: the dead worker's file still counts, in a scrape of the server as it is now
        assert fresh(prom, PREDICT_OK, after=time.time()) == 30
        post_each(base_url, records, 20)
        assert scraped(prom, PREDICT_OK, 50) == 50
        served = query(prom, "sum(sail_predictions_total)")
        assert served is not None and served >= 50
        info = requests.get(
            f"{prom}/api/v1/query", params={"query": "sail_model_info"}, timeout=5
        ).json()
        (series,) = info["data"]["result"]
        assert (
            series["metric"]["bundle_id"]
            == requests.get(f"{base_url}/metadata", timeout=5).json()["bundle_id"]
        )
        assert series["metric"]["runtime"] in ("onnx", "sklearn")
        # The check can fail: with the dead worker's counts lost, the next scrape is short.
        (shared / f"counter_{first[0]}.db").unlink()
        lost = fresh(prom, PREDICT_OK, after=time.time())
        assert lost is not None and lost < 50, lost


def test_template_alert_rules_pass_promtool(tmp_path):
    promtool = _tool("promtool")
    rules = bake(tmp_path) / "monitoring" / "prometheus-rules.yml"
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
