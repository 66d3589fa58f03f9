"""A shadow behind the real nginx router (test_deploy's stand-ins, which log their predictions
as the inference image does): every request reaches both containers, only the live one
answers (byte for byte what it answers alone), `sail shadow report` agrees with the two logs,
decides hold, fail and pass, and a shadow that is down or slow does not hold the live answers."""

from __future__ import annotations

import json
import time

import pytest
import requests

from conftest import ok, sail
from sail_pipelines.inference.smoke import free_port
from test_deploy import (  # noqa: F401 - docker_client, project, stubs are fixtures
    REPO,
    docker_client,
    first_error_line,
    names,
    package,
    project,
    stubs,
)

pytestmark = pytest.mark.docker


def state(project) -> dict:
    return json.loads((project / ".sail" / "router" / "staging" / "state.json").read_text())


def staging(project, *args: str):
    return sail(project, "deploy", "--environment", "staging", *args)


def live_and_shadow(project, stubs, shadow_mode: str) -> int:
    """v1 live on a fresh port, v2 (in `shadow_mode`) as its shadow; the router's port."""
    port = free_port()
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(staging(project, "--port", str(port)))
    stubs.build(f"{REPO}:d00d-v2", mode=shadow_mode)
    package(project, f"{REPO}:d00d-v2")
    out = json.loads(ok(staging(project, "--strategy", "shadow")).stdout)
    assert out["smoke"]["matched"] is True and "tag" not in out
    return port


def post(port: int, request_id: str, x: int) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/predict",
        json=[{"x": x}],
        headers={"X-Request-ID": request_id},
        timeout=10,
    )


def logged(lines, prefix: str) -> dict[str, list]:
    """request id -> predictions, of the lines whose id starts with `prefix`."""
    found = {}
    for line in lines:
        text = line.decode() if isinstance(line, bytes) else line
        if text.startswith("{") and json.loads(text)["request_id"].startswith(prefix):
            found[json.loads(text)["request_id"]] = json.loads(text)["outputs"]["prediction"]
    return found


def both_logs(project, docker_client, prefix: str, n: int) -> tuple[dict, dict]:
    """The live container's (its stdout) and the shadow's (its file), once the mirror wrote n."""
    slots = state(project)
    shadow_log = slots["shadow"]["log"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shadow = logged(open(shadow_log).read().splitlines(), prefix)
        if len(shadow) >= n:
            break
        time.sleep(0.1)
    live = docker_client.containers.get(slots["live"]["id"]).logs(stdout=True, stderr=False)
    return logged(live.splitlines(), prefix), shadow


def agreement(live: dict, shadow: dict) -> float:
    pairs = [
        (a, b)
        for rid in live.keys() & shadow.keys()
        for a, b in zip(live[rid], shadow[rid], strict=True)
    ]
    return sum(str(a) == str(b) for a, b in pairs) / len(pairs)


def report(project) -> dict:
    out = json.loads(ok(sail(project, "shadow", "report", "--environment", "staging")).stdout)
    assert out["files"][0].endswith("reports/live/shadow-staging.json")
    written = json.loads((project / "reports" / "live" / "shadow-staging.json").read_text())
    assert (project / "reports" / "live" / "shadow-staging.png").stat().st_size > 1000
    assert "# Shadow report: staging" in (project / "reports/live/shadow-staging.md").read_text()
    return written


def test_every_request_reaches_both_and_only_live_answers(project, stubs, docker_client):
    port = live_and_shadow(project, stubs, "ready")
    live_port = state(project)["live"]["port"]
    for i in range(5):  # the live container alone, then through the router with the mirror
        alone = post(live_port, f"alone-{i}", i)
        routed = post(port, f"alone-{i}", i)
        assert (routed.status_code, routed.content) == (alone.status_code, alone.content)
        assert json.loads(routed.content)["image"] == f"{REPO}:c0ffee-v1"
    for i in range(60):
        assert post(port, f"req-{i}", i).status_code == 200
    live, shadow = both_logs(project, docker_client, "req-", 60)
    assert len(live) == len(shadow) == 60 and live.keys() == shadow.keys()
    written = report(project)
    assert written["agreement"] == agreement(live, shadow) == 1.0
    assert (written["decision"], written["requests"], written["kind"]) == ("hold", 65, "shadow")
    assert "135 more paired requests needed" in written["summary"]
    assert written["candidate"]["image"] == f"{REPO}:d00d-v2"
    assert written["candidate"]["image_id"] == state(project)["shadow"]["image_id"]
    assert written["stable"]["image"] == f"{REPO}:c0ffee-v1"
    # Rollback drops the shadow; the live container never stopped.
    back = json.loads(ok(sail(project, "rollback", "--environment", "staging")).stdout)
    assert back["shadow_removed"] == "deploy-check-staging-shadow"
    assert "shadow" not in state(project) and post(port, "after", 1).status_code == 200
    assert "no shadow runs in staging" in first_error_line(
        sail(project, "shadow", "report", "--environment", "staging"), "shadow"
    )


def test_a_shifted_shadow_fails_and_a_redeploy_drops_it(project, stubs, docker_client):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("min_live_requests: 200", "min_live_requests: 50"))
    port = live_and_shadow(project, stubs, "shifted")
    for i in range(60):
        assert post(port, f"req-{i}", i).json()["predictions"] == [0, 1]
    live, shadow = both_logs(project, docker_client, "req-", 60)
    written = report(project)
    assert written["agreement"] == pytest.approx(agreement(live, shadow)) and (
        written["agreement"] < 0.6
    )
    matrix = written["confusion"]["matrix"]  # live 0 and 1, the shadow 1 after its smoke check
    assert written["decision"] == "fail" and sum(map(sum, matrix)) == 120 and matrix[0][1] >= 55
    assert written["disagreements"][0]["stable"] == 0 and written["disagreements"][0]["shadow"] == 1
    # A blue-green deploy drops the shadow first; it never becomes live by itself.
    stubs.build(f"{REPO}:e1e1-v3")
    package(project, f"{REPO}:e1e1-v3")
    ok(staging(project))
    assert "shadow" not in state(project)
    assert "deploy-check-staging-shadow" not in names(docker_client, "deploy_check")


@pytest.mark.parametrize("trouble", ["down", "slow"])
def test_a_shadow_down_or_slow_does_not_hold_the_live_answers(
    project, stubs, docker_client, trouble
):
    port = live_and_shadow(project, stubs, "lagging" if trouble == "slow" else "ready")
    if trouble == "down":
        docker_client.containers.get(state(project)["shadow"]["id"]).stop(timeout=0)
    took = []
    for i in range(20):
        started = time.monotonic()
        response = post(port, f"req-{i}", i)
        took.append(time.monotonic() - started)
        errors = (project / ".sail/router/staging/error.log").read_text()[-2000:]
        assert response.status_code == 200, errors
        assert response.json()["image"] == f"{REPO}:c0ffee-v1"
    # The lagging shadow takes 2 s per answer; the mirror gives up after 1 s and the live
    # answer never waits for it.
    assert max(took) < 0.5, took
