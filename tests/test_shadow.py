"""A shadow behind the real nginx router: every request reaches both containers, only the live
one answers (byte for byte what it answers alone), `sail shadow report` agrees with the two logs,
decides hold, fail and pass, and a shadow that is down or slow does not hold the live answers.
The first test runs the real inference image `sail package` built (test_deploy's
`real_project`) as both live and shadow under load; the others run test_deploy's stand-ins,
which log their predictions as the inference image does."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests

from conftest import ok, sail
from load import Load
from sail_pipelines.inference.smoke import free_port
from test_bluegreen import staging, state
from test_deploy import (  # noqa: F401 - docker_client, project, real_project, stubs are fixtures
    REPO,
    docker_client,
    first_error_line,
    names,
    package,
    project,
    real_project,
    stubs,
)

pytestmark = pytest.mark.docker


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


def counted(lines) -> Counter:
    """request id -> how many prediction-log lines give its predictions (a refused request's
    line, such as the smoke check's bad one, gives none)."""
    found: Counter = Counter()
    for line in lines:
        text = line.decode() if isinstance(line, bytes) else line
        if text.startswith("{") and json.loads(text).get("outputs"):
            found[json.loads(text)["request_id"]] += 1
    return found


def sent(answers, since: float = 0.0, until: float = float("inf")) -> dict[str, bytes]:
    """request id (nginx made it) -> the body the client got, of the requests sent in between."""
    return {json.loads(body)["request_id"]: body for at, body in answers if since <= at < until}


def real_logs(project, docker_client, wanted: set[str]) -> tuple[Counter, Counter]:
    """The live container's lines (all of its stdout) and the shadow's file, once the file names
    every wanted id (a mirror may still be on its way when the client has its answer)."""
    slots = state(project)
    deadline = time.monotonic() + 10
    while True:
        shadow = counted(open(slots["shadow"]["log"]).read().splitlines())
        if wanted <= shadow.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    live = docker_client.containers.get(slots["live"]["id"]).logs(stdout=True, stderr=False)
    return counted(live.splitlines()), shadow


def router_errors(project) -> list[str]:
    """The router's error log's last lines: why nginx answered a request itself."""
    log = project / ".sail" / "router" / "staging" / "error.log"
    return log.read_text().splitlines()[-10:] if log.exists() else []


@pytest.mark.timeout(3000)  # the first test to ask for packaged_project builds the image
def test_the_real_image_shadowed_under_load(real_project, docker_client):
    """The packaged image live and, the same image again, as its shadow: 8 threads post the
    holdout rows without pause (ids nginx makes) through the shadow deploy, the report and the
    rollback."""
    port = free_port()
    ok(staging(real_project, "--port", str(port)))
    records = json.loads((real_project / "models/accepted/holdout.json").read_text())["records"]
    url = f"http://127.0.0.1:{port}"
    with Load(url, records, keep=True) as load:
        load.wait_for(20)
        out = json.loads(ok(staging(real_project, "--strategy", "shadow")).stdout)
        mirrored_from = time.monotonic()
        load.wait_for(load.counts.ok + 240)
    assert load.counts.failed == 0, (load.counts.examples, router_errors(real_project))
    assert out["smoke"]["matched"] is True and out["shadow"] == "sail-model-staging-shadow"
    mirrored = sent(load.counts.answers, mirrored_from)
    live, shadow = real_logs(real_project, docker_client, set(mirrored))
    assert len(mirrored) >= 200
    assert {live[r] for r in sent(load.counts.answers)} == {1}  # each request logged once live
    assert {shadow[r] for r in mirrored} == {1}  # ... and once by the shadow, once mirrored
    paired = live.keys() & shadow.keys()
    written = report(real_project)
    assert (written["decision"], written["agreement"]) == ("pass", 1.0), written["summary"]
    assert written["requests"] == len(paired) and written["records"] == len(paired) * len(records)
    assert written["unpaired"]["shadow"] == len(shadow.keys() - paired)  # its smoke check
    assert written["errors"] == {"stable": 0, "shadow": 0}
    assert (
        written["candidate"]
        == written["stable"]
        == {k: state(real_project)["live"][k] for k in ("image", "image_id")}
    )
    with Load(url, records, keep=True) as again:
        again.wait_for(20)
        dropping_at = time.monotonic()
        back = json.loads(ok(sail(real_project, "rollback", "--environment", "staging")).stdout)
        dropped_at = time.monotonic()
        again.wait_for(again.counts.ok + 20)
    assert again.counts.failed == 0, (again.counts.examples, router_errors(real_project))
    assert back["shadow_removed"] == "sail-model-staging-shadow" and "shadow" not in state(
        real_project
    )
    shadow_after = counted(open(out["prediction_log"]).read().splitlines())
    # Mirrored until the rollback began (it returns once those mirrors ended), never after it.
    assert sent(again.counts.answers, until=dropping_at).keys() <= shadow_after.keys()
    assert not sent(again.counts.answers, dropped_at).keys() & shadow_after.keys()
    # Byte for byte what the live container answers alone to the same request (and id).
    alone = requests.Session()
    live_url = f"http://127.0.0.1:{state(real_project)['live']['port']}/predict"
    for rid, body in sent(load.counts.answers + again.counts.answers).items():
        answer = alone.post(live_url, json=records, headers={"X-Request-ID": rid}, timeout=10)
        assert answer.content == body, rid


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
