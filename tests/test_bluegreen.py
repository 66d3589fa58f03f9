"""Blue-green behind the real nginx router, under real load: 8 threads POST without pause to
the environment's port (a fresh connection per request, tests/load.py) for the whole deploy,
failed deploy and rollback, and not one request may fail. The first test runs the real
inference image `sail package` built (test_deploy's `real_project`, built once per session);
the second uses test_deploy's stand-ins, which start in a moment, for the failure paths."""

from __future__ import annotations

import json

import pytest

from conftest import ok, sail
from load import Load
from sail_pipelines.inference.smoke import free_port
from test_deploy import (  # noqa: F401 - docker_client, project, real_project, stubs are fixtures
    MODEL,
    REPO,
    docker_client,
    first_error_line,
    names,
    package,
    project,
    real_project,
    served,
    stubs,
)

pytestmark = pytest.mark.docker


def state(project) -> dict:
    return json.loads((project / ".sail" / "router" / "staging" / "state.json").read_text())


def staging(project, *args: str, **env: str):
    return sail(project, "deploy", "--environment", "staging", *args, **env)


@pytest.mark.timeout(3000)  # the first test to ask for packaged_project builds the image
def test_switch_and_rollback_of_the_real_image_fail_no_request(real_project, docker_client):
    port = free_port()
    first = json.loads(ok(staging(real_project, "--port", str(port))).stdout)
    assert first["color"] == "blue" and first["smoke"]["matched"] is True
    holdout = json.loads((real_project / "models" / "accepted" / "holdout.json").read_text())
    with Load(f"http://127.0.0.1:{port}", holdout["records"], tally="model_version") as load:
        load.wait_for(20)
        switched = json.loads(ok(staging(real_project)).stdout)
        during_switch = load.counts.ok
        back = json.loads(ok(sail(real_project, "rollback", "--environment", "staging")).stdout)
        load.wait_for(load.counts.ok + 20)
    assert load.counts.failed == 0, load.counts.examples
    assert during_switch >= 20 and load.counts.bodies == {"1": load.counts.ok}
    assert (switched["color"], switched["previous_container"]) == ("green", first["container"])
    assert (back["container"], back["color"]) == ("sail-model-staging-blue", "blue")
    assert back["tag"]["tag"] == "sail-model/inference:staging"
    assert (state(real_project)["live"]["color"], state(real_project)["previous"]["color"]) == (
        "blue",
        "green",
    )
    assert names(docker_client, "sail_model") == {
        "sail-model-staging-blue": "running",
        "sail-model-staging-green": "exited",
    }


def test_failed_deploy_switch_and_rollback_under_load(project, stubs, docker_client):
    """v1 loads slowly on every start (SLOW_START s): the rollback that starts it again waits for
    it, whatever --timeout the deploys had."""
    port = free_port()
    stubs.build(f"{REPO}:c0ffee-v1", mode="slow")
    package(project, f"{REPO}:c0ffee-v1")
    ok(staging(project, "--port", str(port), "--timeout", "30"))
    nothing_back = sail(project, "rollback", "--environment", "staging")
    assert "no previous container of staging is left on this host" in first_error_line(
        nothing_back, "rollback"
    )
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}], tally="image") as load:
        load.wait_for(50)
        stubs.build(f"{REPO}:bad-never", mode="never")
        package(project, f"{REPO}:bad-never")
        failed = staging(project, "--timeout", "2")
        assert "staging still serves deploy-check-staging-blue" in first_error_line(failed)
        after_failure = dict(load.counts.bodies)
        stubs.build(f"{REPO}:d00d-v2")
        package(project, f"{REPO}:d00d-v2")
        switched = json.loads(ok(staging(project, "--timeout", "2")).stdout)
        load.wait_for(load.counts.ok + 50)
        before_rollback = dict(load.counts.bodies)
        back = json.loads(ok(sail(project, "rollback", "--environment", "staging")).stdout)
        load.wait_for(load.counts.ok + 50)
    assert load.counts.failed == 0, load.counts.examples
    assert set(after_failure) == {f"{REPO}:c0ffee-v1"}  # the new image never answered anyone
    assert switched["color"] == "green" and before_rollback.get(f"{REPO}:d00d-v2", 0) > 0
    assert back["image"] == f"{REPO}:c0ffee-v1" and back["ready_seconds"] >= 2
    assert load.counts.bodies[f"{REPO}:c0ffee-v1"] > after_failure[f"{REPO}:c0ffee-v1"]
    assert served(port)["image"] == f"{REPO}:c0ffee-v1"
    assert names(docker_client, MODEL) == {
        "deploy-check-staging-blue": "running",
        "deploy-check-staging-green": "exited",
    }
    assert (
        docker_client.images.get(f"{REPO}:staging").id
        == docker_client.images.get(f"{REPO}:c0ffee-v1").id
    )
    # Rolling back again goes forward to v2: the two colors take turns.
    again = json.loads(ok(sail(project, "rollback", "--environment", "staging")).stdout)
    assert again["image"] == f"{REPO}:d00d-v2" and served(port)["image"] == f"{REPO}:d00d-v2"


def test_canary_share_weight_promotion_and_rollback(project, stubs, docker_client):
    port = free_port()
    v1 = stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(staging(project, "--port", str(port)))
    v2 = stubs.build(f"{REPO}:d00d-v2")
    package(project, f"{REPO}:d00d-v2")
    for args, message in (
        (("--strategy", "canary"), "--strategy canary needs --weight P"),
        (("--weight", "20"), "--weight goes with --strategy canary"),
    ):
        assert message in first_error_line(staging(project, *args))
    out = json.loads(ok(staging(project, "--strategy", "canary", "--weight", "20")).stdout)
    assert (out["weight"], out["color"], out["smoke"]["matched"]) == (20, "green", True)
    assert "tag" not in out  # staging still names v1 until the canary is promoted
    assert state(project)["canary"]["weight"] == 20 and state(project)["live"]["color"] == "blue"
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}], tally="image") as load:
        load.wait_for(2000)
    assert load.counts.failed == 0, load.counts.examples
    n, canary = load.counts.ok, load.counts.bodies.get(f"{REPO}:d00d-v2", 0)
    bound = 4 * (n * 0.2 * 0.8) ** 0.5  # 4 standard deviations of Binomial(n, 0.2)
    assert abs(canary - 0.2 * n) <= bound, (canary, n)
    # The same image again: only the share changes, in the same container.
    again = json.loads(ok(staging(project, "--strategy", "canary", "--weight", "50")).stdout)
    assert (again["weight"], again["container"]) == (50, out["container"])
    # Rolling back drops the canary: all requests to v1, the canary container goes.
    back = json.loads(ok(sail(project, "rollback", "--environment", "staging")).stdout)
    assert back["canary_removed"] == "deploy-check-staging-green"
    assert names(docker_client, MODEL) == {"deploy-check-staging-blue": "running"}
    assert "canary" not in state(project) and served(port)["image"] == f"{REPO}:c0ffee-v1"
    assert docker_client.images.get(f"{REPO}:staging").id == v1.id
    # A canary promoted at weight 100 becomes live; the old one is stopped and kept.
    ok(staging(project, "--strategy", "canary", "--weight", "5"))
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}]) as load:
        load.wait_for(50)
        promoted = json.loads(
            ok(staging(project, "--strategy", "canary", "--weight", "100")).stdout
        )
        load.wait_for(load.counts.ok + 50)
    assert load.counts.failed == 0, load.counts.examples
    assert promoted["promoted"] is True and served(port)["image"] == f"{REPO}:d00d-v2"
    assert names(docker_client, MODEL) == {
        "deploy-check-staging-blue": "exited",
        "deploy-check-staging-green": "running",
    }
    assert docker_client.images.get(f"{REPO}:staging").id == v2.id


def canary(project, *args: str):
    return sail(project, "canary", "analyze", "--environment", "staging", *args)


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("errors", "the canary's error rate is higher than stable's"),
        ("shifted", "the predicted classes drifted from stable's"),
    ],
)
def test_canary_analysis_rolls_a_bad_canary_back_by_itself(
    project, stubs, docker_client, mode, reason
):
    port = free_port()
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(staging(project, "--port", str(port)))
    stubs.build(f"{REPO}:bad-{mode}", mode=mode)
    package(project, f"{REPO}:bad-{mode}")
    ok(staging(project, "--strategy", "canary", "--weight", "50"))
    held = json.loads(ok(canary(project, "--min-requests", "200")).stdout)
    assert held["decision"] == "hold" and held["reasons"] == [
        f"{200 - held['requests']['canary']} more canary requests needed"
    ]
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}]) as load:
        load.wait_for(500)
        judged = json.loads(ok(canary(project, "--min-requests", "200")).stdout)
        assert judged["decision"] == "rollback" and reason in " ".join(judged["reasons"])
        if mode == "shifted":
            assert_labels_judge_it(project, docker_client)
        auto = json.loads(
            ok(canary(project, "--min-requests", "200", "--auto", "--steps", "50,100")).stdout
        )
    assert auto["decision"] == "rolled back"
    assert auto["dropped"]["canary_removed"] == "deploy-check-staging-green"
    assert names(docker_client, MODEL) == {"deploy-check-staging-blue": "running"}
    assert served(port)["image"] == f"{REPO}:c0ffee-v1"


def assert_labels_judge_it(project, docker_client):
    """Feedback labels for every request either container logged, the holdout's answers (what
    stable says): the analysis reads both logs and finds the shifted canary's accuracy worse."""
    rows = []
    for color in ("blue", "green"):
        container = docker_client.containers.get(f"deploy-check-staging-{color}")
        for line in container.logs(stdout=True, stderr=False).splitlines():
            if line.startswith(b"{") and json.loads(line)["request_id"]:
                rows += [f"{json.loads(line)['request_id']},{n},{n}" for n in (0, 1)]
    labels = project / "data" / "feedback" / "labels.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("request_id,record,label\n" + "\n".join(rows) + "\n")
    params = project / "params.yaml"  # the stand-ins log no probabilities: no roc_auc
    params.write_text(
        params.read_text().replace("primary_metric: roc_auc", "primary_metric: accuracy")
    )
    live = json.loads(ok(canary(project, "--min-requests", "200")).stdout)["live_metric"]
    assert live["judged"] and live["stable"] == 1.0 and live["canary"] < 0.6, live
    assert live["worse"][0].startswith("live accuracy: canary minus stable")
    labels.unlink()


def test_canary_auto_steps_a_good_one_to_live(project, stubs, docker_client):
    port = free_port()
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(staging(project, "--port", str(port)))
    v2 = stubs.build(f"{REPO}:d00d-v2")
    package(project, f"{REPO}:d00d-v2")
    ok(staging(project, "--strategy", "canary", "--weight", "5"))
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}], tally="image") as load:
        stepped = json.loads(
            ok(canary(project, "--min-requests", "50", "--auto", "--steps", "5,25,100")).stdout
        )
        load.wait_for(load.counts.ok + 50)
    assert load.counts.failed == 0, load.counts.examples
    assert stepped["decision"] == "promoted"
    assert [s.get("decision") or s.get("weight") for s in stepped["steps"]] == [
        "promote",
        25,
        "promote",
        100,
    ]
    assert served(port)["image"] == f"{REPO}:d00d-v2"
    assert docker_client.images.get(f"{REPO}:staging").id == v2.id
