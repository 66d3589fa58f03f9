"""The router alone (clients/router.py): the real nginx in front of two loopback stand-ins,
switched back and forth under load (8 threads, keep-alive and not) without one failed request
(the router answers clients with `Connection: close`, so no client sends on a connection an old
worker is closing);
a config nginx refuses is put back and the running router keeps its upstream; a mirrored body
stays in memory up to the model's limit. No Docker."""

from __future__ import annotations

import json
import time
from http.server import ThreadingHTTPServer

import pytest
import requests

from load import Load
from sail_pipelines.clients import router
from sail_pipelines.errors import SailError
from sail_pipelines.inference.smoke import free_port
from servers import QuietHandler, serving

RECEIVED: dict[str, int] = {}  # requests each stand-in received, counted as they arrive


def named(name: str) -> ThreadingHTTPServer:
    RECEIVED[name] = 0

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            RECEIVED[name] += 1
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply(
                200, {"Content-Type": "application/json"}, json.dumps({"name": name}).encode()
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@pytest.fixture
def prefix(tmp_path):
    path = tmp_path / "router" / "staging"
    yield path
    router.stop(path)


def upstream(url: str, color: str) -> router.Upstream:
    return router.Upstream(color, color, int(url.rsplit(":", 1)[1]))


@pytest.mark.parametrize("keepalive", [False, True])
def test_switches_under_load_lose_no_request(prefix, keepalive):
    port = free_port()
    with serving(named("blue")) as blue, serving(named("green")) as green:
        router.write_config("staging", prefix, port, [upstream(blue, "blue")])
        assert router.apply(prefix)["started"] is True
        with Load(f"http://127.0.0.1:{port}", {}, keepalive=keepalive, tally="name") as load:
            for n in range(6):
                load.wait_for(load.counts.ok + 100)
                color, url = ("green", green) if n % 2 == 0 else ("blue", blue)
                router.write_config("staging", prefix, port, [upstream(url, color)])
                applied = router.apply(prefix)
                assert applied["started"] is False and applied["seconds"] < 5
                old = "blue" if color == "green" else "green"
                # the reload returned: the old workers are gone, nothing reaches the old color
                received = RECEIVED[old]
                load.wait_for(load.counts.ok + 100)
                assert RECEIVED[old] == received
        assert load.counts.failed == 0, load.counts.examples
        assert load.counts.bodies["blue"] > 0 and load.counts.bodies["green"] > 0


def test_a_refused_config_is_put_back(prefix):
    port = free_port()
    with serving(named("blue")) as blue:
        router.write_config("staging", prefix, port, [upstream(blue, "blue")])
        router.apply(prefix)
        good = (prefix / "nginx.conf").read_text()
        with pytest.raises(SailError, match="nginx config check failed: .*port"):
            router.write_config("staging", prefix, port, [router.Upstream("green", "green", 0)])
        assert (prefix / "nginx.conf").read_text() == good
        answer = requests.post(f"http://127.0.0.1:{port}/predict", json={}, timeout=5)
        assert answer.json() == {"name": "blue"}
    assert router.stop(prefix) is True and router.master_pid(prefix) is None
    assert router.stop(prefix) is False


def test_a_mirrored_body_stays_in_memory_up_to_the_model_limit(prefix):
    """A mirror has nginx read each body before passing it on; one larger than nginx's default
    buffer would go to a temporary file under the project (which the workers, nobody under a
    root master, may not reach: a 500 for every real holdout batch). In memory, both get it;
    above the model's own limit nginx refuses it, as the model does."""
    port = free_port()
    with serving(named("blue")) as blue, serving(named("shadow")) as shadow:
        router.write_config(
            "staging", prefix, port, [upstream(blue, "blue")], upstream(shadow, "shadow")
        )
        router.apply(prefix)
        url = f"http://127.0.0.1:{port}/predict"
        big = b"[" + b"1," * 300_000 + b"1]"  # 600 kB, under the model's 1 MB
        answer = requests.post(url, data=big, timeout=10)
        assert (answer.status_code, answer.json()) == (200, {"name": "blue"}), answer.text
        too_big = b"1" * (router.MIRROR_BODY_BYTES + 1)
        assert requests.post(url, data=too_big, timeout=10).status_code == 413
        assert RECEIVED["blue"] == 1 and wait_for_count("shadow", 1)


def wait_for_count(name: str, n: int) -> bool:
    """The mirror's copy arrives on its own time."""
    deadline = time.monotonic() + 5
    while RECEIVED[name] < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return RECEIVED[name] == n


def test_the_router_drops_an_idle_model_connection_before_gunicorn_does(prefix):
    """gunicorn closes a connection idle for its keepalive; a POST nginx sends on one just then
    is not retried (not idempotent) and its client gets a 502. nginx must close its idle
    connections to the model first: the stand-in records how long each one sat idle before
    the other side closed it."""
    from sail_pipelines.inference import serve

    assert router.MODEL_KEEPALIVE_SECONDS == serve.KEEPALIVE_SECONDS
    idle_before_close: list[float] = []

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # longer than either side's keepalive: only the proxy closes

        def handle(self) -> None:
            answered = time.monotonic()
            self.close_connection = False
            while not self.close_connection:
                self.handle_one_request()
                if not self.close_connection:
                    answered = time.monotonic()
            idle_before_close.append(time.monotonic() - answered)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply(200, {"Content-Type": "application/json"}, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = free_port()
    with serving(server) as model:
        router.write_config("staging", prefix, port, [upstream(model, "blue")])
        router.apply(prefix)
        assert requests.post(f"http://127.0.0.1:{port}/predict", json={}, timeout=5).ok
        deadline = time.monotonic() + serve.KEEPALIVE_SECONDS + 1
        while not idle_before_close and time.monotonic() < deadline:
            time.sleep(0.1)
    assert idle_before_close, "nginx kept its idle connection past gunicorn's keepalive"
    assert idle_before_close[0] < serve.KEEPALIVE_SECONDS - 1
