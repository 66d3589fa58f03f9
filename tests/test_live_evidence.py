"""Promotion on live evidence: `sail canary analyze` leaves reports/live/canary-<env>.json, and
`sail promote` shows the newest one for the candidate's image, requires a passing one with
`promotion.require_live_evidence`, and names it (path, sha256, decision) in the audit record.
Promotion runs in this process against test_promote's stand-in images and registered versions."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import TEST_AUDIT_KEY, ok, sail
from sail_pipelines.config import ProjectPaths, Settings, load_params
from sail_pipelines.delivery import live_evidence, promote
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import signing
from sail_pipelines.monitoring import canary
from test_deploy import docker_client  # noqa: F401 - a fixture
from test_promote import (  # noqa: F401 - stubs, project and in_process_mlflow are fixtures
    MODEL,
    REPO,
    champion,
    history,
    in_process_mlflow,
    local_log,
    no_lock_left,
    packaged,
    project,
    stubs,
)

OTHER = "sha256:" + "0" * 64


def evidence(root, image_id, decision, created=None, image=f"{REPO}:c0de-v1", env="staging"):
    record = {
        "kind": "canary",
        "environment": env,
        "candidate": {"image": image, "image_id": image_id},
        "stable": {"image": f"{REPO}:c0de-v0", "image_id": OTHER},
        "decision": decision,
        "summary": f"canary at 25%: {decision}",
        "created": created or live_evidence.now(),
        "requests": 1200,
    }
    return live_evidence.write(root / "reports", record, "# canary\n")


def require(root, on: bool) -> None:
    params = root / "params.yaml"
    text = params.read_text().replace("require_live_evidence: false", "")
    params.write_text(text.replace("promotion:\n", f"promotion:\n  require_live_evidence: {on}\n"))


def promoting(root, said=None):
    paths = ProjectPaths(root)
    keys = promote.Keys(signing.private_key(TEST_AUDIT_KEY, "test"), None)
    return promote.run(
        paths,
        load_params(paths),
        Settings.from_env(paths, {}),
        keys,
        promote.Promotion("1", "none", "alice"),
        say=(said if said is not None else []).append,
    )


@pytest.mark.docker
def test_require_live_evidence_refuses_without_a_passing_report_then_promotes_with_one(
    project, stubs, docker_client, in_process_mlflow
):
    packaged(project, stubs, "1")
    image_id = docker_client.images.get(f"{REPO}:c0de-v1").id
    require(project, True)
    refusals = [
        (None, "no live evidence for v1's image in reports/live/"),
        (lambda: evidence(project, image_id, "fail"), "canary-staging.json says fail for v1"),
        (lambda: evidence(project, image_id, "hold"), "canary-staging.json says hold for v1"),
        (lambda: evidence(project, OTHER, "pass"), "no live evidence for v1's image"),
        (
            lambda: evidence(project, image_id, "pass", "2020-01-01T00:00:00+00:00"),
            "(2020-01-01T00:00:00+00:00) is older than v1",
        ),
    ]
    for write, message in refusals:
        if write:
            write()
        with pytest.raises(SailError, match="require_live_evidence is true; nothing was changed"):
            try:
                promoting(project)
            except SailError as exc:
                assert message in str(exc), exc
                raise
        assert champion(project) is None and history(project) == []
        no_lock_left(project)
    path = evidence(project, image_id, "pass")
    evidence(project, OTHER, "fail", env="production")  # another image's: not taken
    said: list[str] = []
    result = promoting(project, said)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = {"report": "reports/live/canary-staging.json", "sha256": digest, "decision": "pass"}
    assert result["audit"]["live_evidence"] == named
    assert history(project)[-1]["live_evidence"] == named == local_log(project)[-1]["live_evidence"]
    assert said[0].startswith("live evidence: canary in staging: pass (canary at 25%: pass")
    # the record's digest tells a report edited after the promotion
    path.write_text(path.read_text().replace('"pass"', '"fail"'))
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest()
        != history(project)[-1]["live_evidence"]["sha256"]
    )


@pytest.mark.docker
def test_without_the_key_promotion_says_the_evidence_and_sail_evidence_reports_it(
    project, stubs, docker_client, in_process_mlflow, tmp_path
):
    packaged(project, stubs, "1")
    image_id = docker_client.images.get(f"{REPO}:c0de-v1").id
    summary = tmp_path / "summary.md"
    shown = json.loads(ok(sail(project, "evidence", GITHUB_STEP_SUMMARY=str(summary))).stdout)
    assert shown["line"] == "live evidence: none for v1's image" and shown["evidence"] is None
    assert "No canary or shadow report for v1's image" in summary.read_text()
    evidence(project, image_id, "hold")
    shown = promote.show(
        ProjectPaths(project),
        load_params(ProjectPaths(project)),
        Settings.from_env(ProjectPaths(project), {}),
        "1",
        {},
    )
    assert shown["evidence"]["decision"] == "hold" and not shown["required"]
    saved = json.loads((project / "reports" / "evidence.json").read_text())
    assert saved["line"] == shown["line"] and "canary in staging: hold" in saved["line"]
    result = promoting(project)  # hold, but nothing requires a pass
    assert result["to"] == "1" and champion(project) == "1"
    assert (
        "hold" in result["live_evidence"] and result["audit"]["live_evidence"]["decision"] == "hold"
    )


def test_evidence_matches_by_ref_when_the_image_is_not_on_this_host(tmp_path):
    paths = ProjectPaths(tmp_path)
    assert live_evidence.latest(paths, None, ("m/inference:v1",)) is None
    evidence(tmp_path, OTHER, "pass", "2026-01-01T00:00:00+00:00", image="m/inference:v1")
    newer = evidence(tmp_path, OTHER, "fail", image="m/inference:v1", env="production")
    (tmp_path / "reports" / "live" / "junk.json").write_text("{not json")
    found = live_evidence.latest(paths, None, ("m/inference:v1",))
    assert found is not None and found.path == newer and found.decision == "fail"
    assert live_evidence.latest(paths, None, ("m/inference:v2",)) is None
    assert live_evidence.latest(paths, "sha256:" + "1" * 64, ("m/inference:v1",)) is None


def test_canary_analyze_writes_the_agreed_evidence_files(tmp_path, monkeypatch):
    live = {"image": "m/inference:v1", "image_id": OTHER, "port": 1}
    candidate = {"image": "m/inference:v2", "image_id": "sha256:" + "2" * 64, "port": 2}
    state = {"live": live, "canary": {**candidate, "weight": 20}}
    monkeypatch.setattr(canary.bluegreen, "read_state", lambda prefix: state)
    traffic = {
        1: canary.Traffic(800, 0, ((0.05, 800.0),), {}),
        2: canary.Traffic(200, 40, ((0.05, 200.0),), {}),
    }
    monkeypatch.setattr(canary, "scrape", lambda port: traffic[port])
    params = load_params(ProjectPaths(_baked(tmp_path)))
    for weight_traffic, decision, word in ((200, "fail", "rollback"), (5, "hold", "hold")):
        traffic[2] = canary.Traffic(weight_traffic, weight_traffic // 5, ((0.05, 200.0),), {})
        result = canary.analyze(tmp_path / "staging", params, 100, tmp_path / "reports")
        assert result["decision"] == word
        written = tmp_path / "reports" / "live" / "canary-staging.json"
        record = json.loads(written.read_text())
        assert result["evidence"] == str(written)
        assert {k: record[k] for k in ("kind", "environment", "decision")} == {
            "kind": "canary",
            "environment": "staging",
            "decision": decision,
        }
        assert record["candidate"] == {"image": "m/inference:v2", "image_id": candidate["image_id"]}
        assert record["stable"] == {"image": "m/inference:v1", "image_id": OTHER}
        assert record["requests"] == 800 + weight_traffic and record["summary"].startswith(
            f"canary at 20%: {word}"
        )
        assert written.with_suffix(".md").read_text().startswith(f"# Canary in staging: {decision}")
    traffic[2] = canary.Traffic(200, 0, ((0.05, 200.0),), {})
    canary.analyze(tmp_path / "staging", params, 100, tmp_path / "reports")
    assert json.loads(written.read_text())["decision"] == "pass"


def _baked(tmp_path):
    from conftest import bake

    return bake(tmp_path / "project", project_name="Evidence Check")
