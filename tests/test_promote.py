"""Promotion and rollback: compare-and-set under the registry lock, the production image tag, and
the
signed audit history, against a real MLflow SQLite store, the real Docker daemon and the local
registry. The first test promotes the version the gate registered and `sail package` built the
real inference image for, deploys it to production and asks it /ready and /predict. The others
register versions the way the gate and `sail package` leave them, with stand-in images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import docker
import pytest
import requests
from mlflow import MlflowClient

from conftest import TEST_AUDIT_KEY, TEST_KEY, bake, key_env, ok, sail
from sail_pipelines.config import ProjectPaths, Settings, load_params
from sail_pipelines.delivery import promote
from sail_pipelines.errors import SailError
from sail_pipelines.inference.smoke import free_port
from sail_pipelines.integrity import signing
from test_deploy import (  # noqa: F401 - docker_client and real_project are fixtures
    REGISTRY,
    Stubs,
    docker_client,
    first_error_line,
    publish_signed,
    real_project,
    register_version,
    remove_containers,
    served,
    serves_the_accepted_model,
)

pytestmark = pytest.mark.docker

MODEL = "promote_check"
REPO = "promote-check/inference"
PRODUCTION = f"{REPO}:production"


@pytest.fixture(scope="module")
def stubs(docker_client, base_image):
    made = Stubs(docker_client, base_image)
    yield made
    for container in docker_client.containers.list(
        all=True, filters={"label": f"sail.model={MODEL}"}
    ):
        container.remove(force=True)
    made.remove_all()


@pytest.fixture
def project(tmp_path, stubs, docker_client):
    root = bake(tmp_path, project_name="Promote Check")
    yield root
    remove_containers(docker_client, MODEL, root)
    stubs.untag(PRODUCTION, f"{REGISTRY}/{PRODUCTION}")


def mlflow(project) -> MlflowClient:
    uri = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def packaged(project, stubs, version_hint: str, ref: str | None = None, registry: str = "") -> str:
    """Register the next version with an inference image that embeds it, as `sail package` would."""
    ref = ref or f"{registry}{REPO}:c0de-v{version_hint}"
    version = register_version(project, MODEL, ref)
    stubs.build(ref, model=MODEL, version=version, bundle_id=f"bundle-v{version}")
    return version


def champion(project) -> str | None:
    aliases = mlflow(project).get_registered_model(MODEL).aliases
    return None if aliases.get("champion") is None else str(aliases["champion"])


def history(project) -> list[dict]:
    tags = mlflow(project).get_registered_model(MODEL).tags
    return [json.loads(tags[k]) for k in sorted(tags) if k.startswith("sail.audit.")]


def local_log(project) -> list[dict]:
    path = project / "reports" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def refused(result, text, command="promote"):
    stderr = first_error_line(result, command)
    assert text in stderr, stderr


def no_lock_left(project):
    assert [m.name for m in mlflow(project).search_registered_models()] == [MODEL]


@pytest.mark.timeout(3000)  # the first test to ask for packaged_project builds the image
def test_promote_then_deploy_runs_the_packaged_inference_image(real_project, docker_client):
    project = real_project
    image = json.loads((project / "reports" / "package.json").read_text())["image"]
    promotion = ("--version", "1", "--expect-champion", "none", "--approver", "alice")
    promoted = json.loads(ok(sail(project, "promote", *promotion)).stdout)
    assert (promoted["to"], promoted["image"]) == ("1", image)
    assert promoted["production_tag"] == "sail-model/inference:production"
    port = free_port()
    deployed = ok(sail(project, "deploy", "--environment", "production", "--port", str(port)))
    out = json.loads(deployed.stdout)
    assert out["champion"] == "1" and out["image"] == "sail-model/inference:production"
    assert out["image_id"] == docker_client.images.get(image).id  # the one packaged for v1
    assert serves_the_accepted_model(project, port)["model_version"] == "1"


def test_promote_deploy_rollback(project, stubs, docker_client):
    v1 = packaged(project, stubs, "1")
    first = json.loads(
        ok(
            sail(
                project,
                "promote",
                "--version",
                v1,
                "--expect-champion",
                "none",
                "--approver",
                "alice",
            )
        ).stdout
    )
    assert {k: first[k] for k in ("model", "from", "to", "changed", "image", "production_tag")} == {
        "model": MODEL,
        "from": None,
        "to": "1",
        "changed": True,
        "image": f"{REPO}:c0de-v1",
        "production_tag": PRODUCTION,
    }
    record = first["audit"]
    assert {
        k: record[k]
        for k in (
            "action",
            "from",
            "to",
            "approver",
            "image",
            "production_tag",
            "pushed",
            "seq",
            "prev",
        )
    } == {
        "action": "promote",
        "from": None,
        "to": "1",
        "approver": "alice",
        "image": f"{REPO}:c0de-v1",
        "production_tag": PRODUCTION,
        "pushed": False,
        "seq": 1,
        "prev": None,
    }
    assert docker_client.images.get(PRODUCTION).id == docker_client.images.get(f"{REPO}:c0de-v1").id
    tags = mlflow(project).get_model_version(MODEL, "1").tags
    assert (
        tags["sail.promoted_by"] == "alice"
        and tags["sail.promoted_from"] == "none"
        and tags["sail.promoted_at"] == record["at"]
    )
    assert history(project) == [record] == local_log(project)

    v2 = packaged(project, stubs, "2")
    second = json.loads(
        ok(
            sail(project, "promote", "--version", v2, "--expect-champion", v1, "--approver", "bob")
        ).stdout
    )
    assert second["audit"]["previous_image"] == f"{REPO}:c0de-v1" and second["audit"]["seq"] == 2
    assert mlflow(project).get_model_version(MODEL, v2).tags["sail.previous_champion"] == "1"
    port = free_port()
    ok(sail(project, "deploy", "--environment", "production", "--port", str(port)))
    assert served(port)["image"] == f"{REPO}:c0de-v2"

    # v2 misbehaves in production: back to v1, with its image, recorded; then redeploy.
    back = json.loads(ok(sail(project, "rollback", BUILD_USER="carol")).stdout)
    assert {k: back[k] for k in ("from", "to", "image")} == {
        "from": "2",
        "to": "1",
        "image": f"{REPO}:c0de-v1",
    }
    assert back["audit"]["action"] == "rollback" and back["audit"]["approver"] == "carol"
    # Only v2 ever ran here: no previous container to switch to, so the deploy below puts v1 back.
    assert back["local"]["switched"] is False
    assert back["local"]["next"] == "sail deploy --environment production"
    assert (
        champion(project) == "1"
        and docker_client.images.get(PRODUCTION).id
        == docker_client.images.get(f"{REPO}:c0de-v1").id
    )
    assert mlflow(project).get_model_version(MODEL, "1").tags["sail.restored_by"] == "carol"
    ok(sail(project, "deploy", "--environment", "production", "--port", str(port)))
    assert served(port)["image"] == f"{REPO}:c0de-v1"
    assert [r["action"] for r in history(project)] == [
        "promote",
        "promote",
        "rollback",
    ] and history(project) == local_log(project)
    refused(
        sail(project, "rollback"),
        f"nothing to roll back to: v1 is the first champion of {MODEL}",
        "rollback",
    )
    no_lock_left(project)


def test_rollback_follows_the_line_of_champions(project, stubs, docker_client):
    for n in ("1", "2", "3"):
        version = packaged(project, stubs, n)
        ok(sail(project, "promote", "--version", version, "--approver", "alice"))
    refused(sail(project, "rollback", "--to", "3"), "v3 is already the champion", "rollback")
    refused(
        sail(project, "rollback", "--to", "7"),
        "v7 is not a former champion of promote_check (former champions: v1, v2)",
        "rollback",
    )
    assert json.loads(ok(sail(project, "rollback", "--to", "1")).stdout)["to"] == "1"
    assert docker_client.images.get(PRODUCTION).id == docker_client.images.get(f"{REPO}:c0de-v1").id
    refused(
        sail(project, "rollback"), "nothing to roll back to: v1 is the first champion", "rollback"
    )
    # v2 was never rolled back to, and is not below v1: going there again takes a promotion with its
    # review.
    refused(sail(project, "rollback", "--to", "2"), "v2 is not a former champion", "rollback")


def test_a_promotion_after_a_rollback_builds_on_the_restored_champion(
    project, stubs, docker_client
):
    """v1, v2, back to v1, then v3: v3 follows v1 (not v2) in the registry, the audit chain and
    the line of champions, so the next rollback goes back to v1 and v2 stays out."""
    for n in ("1", "2"):
        ok(sail(project, "promote", "--version", packaged(project, stubs, n), "--approver", "ann"))
    ok(sail(project, "rollback", "--approver", "bo"))
    v3 = packaged(project, stubs, "3")
    refused(
        sail(project, "promote", "--version", v3, "--expect-champion", "2"),
        "not the expected '2': someone promoted meanwhile",
    )
    third = json.loads(
        ok(
            sail(project, "promote", "--version", v3, "--expect-champion", "1", "--approver", "cy")
        ).stdout
    )
    assert (third["from"], third["to"], third["image"]) == ("1", "3", f"{REPO}:c0de-v3")
    record = third["audit"]
    assert (record["from"], record["previous_image"], record["seq"]) == ("1", f"{REPO}:c0de-v1", 4)
    assert record["prev"] is not None  # chained to the rollback's record
    assert [(r["action"], r["to"]) for r in history(project)] == [
        ("promote", "1"),
        ("promote", "2"),
        ("rollback", "1"),
        ("promote", "3"),
    ]
    assert mlflow(project).get_model_version(MODEL, v3).tags["sail.previous_champion"] == "1"
    assert docker_client.images.get(PRODUCTION).id == docker_client.images.get(f"{REPO}:c0de-v3").id
    refused(
        sail(project, "rollback", "--to", "2"),
        "v2 is not a former champion of promote_check (former champions: v1)",
        "rollback",
    )
    assert json.loads(ok(sail(project, "rollback")).stdout)["to"] == "1"
    assert champion(project) == "1" and history(project) == local_log(project)
    no_lock_left(project)


def test_rollback_of_a_champion_from_before_the_audit_history(project):
    client = mlflow(project)
    for _ in range(2):
        register_version(project, MODEL, None, alias="")
    # as an earlier sail-pipelines left it
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_model_version_tag(MODEL, "2", "sail.previous_champion", "1")
    result = json.loads(ok(sail(project, "rollback", "--approver", "dave")).stdout)
    assert result["to"] == "1" and result["image"] is None
    assert "v1 has no sail.image tag" in result["audit"]["note"] and champion(project) == "1"


def test_promotion_refusals_change_nothing(project, stubs):
    # v2 holds 'candidate' now
    v1, v2 = (
        packaged(project, stubs, "1"),
        packaged(project, stubs, "2"),
    )
    refused(
        sail(project, "promote", "--version", v1, "--expect-champion", "none"),
        "v1 of promote_check no longer holds 'candidate' (v2 does): a newer build superseded it",
    )
    refused(sail(project, "promote", "--version", "9"), "promote_check has no version 9")
    refused(sail(project, "promote", "--version", "abc"), "'abc' is not a model version number")
    refused(
        sail(project, "promote", "--version", v2, "--expect-champion", "1"),
        "promote_check has no champion, not the expected '1': someone promoted meanwhile",
    )
    refused(
        sail(project, "promote", "--version", v2, DOCKER_HOST="unix:///nonexistent/docker.sock"),
        "Docker is not reachable at unix:///nonexistent/docker.sock",
    )
    v3 = register_version(project, MODEL, f"{REPO}:never-built")
    refused(
        sail(project, "promote", "--version", v3),
        f"image {REPO}:never-built is not on this host: cannot move {PRODUCTION} "
        "to v3's image, nothing was changed",
    )
    refused(
        sail(project, "rollback"), "nothing to roll back: promote_check has no champion", "rollback"
    )
    assert (
        champion(project) is None
        and history(project) == []
        and not (project / "reports" / "audit.jsonl").exists()
    )
    no_lock_left(project)


def test_a_version_without_an_image_is_promoted_and_says_so(project, stubs, docker_client):
    version = register_version(project, MODEL, None)
    result = json.loads(
        ok(sail(project, "promote", "--version", version, "--approver", "erin")).stdout
    )
    assert result["image"] is None and result["production_tag"] is None and champion(project) == "1"
    assert (
        result["audit"]["note"]
        == f"v1 has no sail.image tag (no `sail package`): {PRODUCTION} was not moved"
    )
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(PRODUCTION)


def test_promotion_pushes_the_production_tag_to_the_registry(project, stubs, docker_client):
    version = packaged(project, stubs, "1", registry=f"{REGISTRY}/")
    publish_signed(docker_client, f"{REGISTRY}/{REPO}:c0de-v1")
    result = json.loads(
        ok(sail(project, "promote", "--version", version, SAIL_REGISTRY=REGISTRY)).stdout
    )
    assert (
        result["production_tag"] == f"{REGISTRY}/{PRODUCTION}" and result["audit"]["pushed"] is True
    )
    assert (
        "production"
        in requests.get(f"http://{REGISTRY}/v2/{REPO}/tags/list", timeout=10).json()["tags"]
    )


def test_racing_promotions_cannot_both_win(project):
    version = register_version(project, MODEL, None)
    env = {**os.environ, **key_env(TEST_KEY)}
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sail_pipelines.cli",
                "--project",
                str(project),
                "promote",
                "--version",
                version,
                "--expect-champion",
                "none",
                "--approver",
                f"racer-{i}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in racers]
    winners = [out for code, out, _ in results if code == 0]
    losers = [err for code, _, err in results if code != 0]
    assert len(winners) == 1 and len(losers) == 3, results
    assert all(
        "has v1, not the expected 'none': someone promoted meanwhile" in err
        and "Traceback" not in err
        for err in losers
    ), losers
    [record] = history(project)
    assert (
        record == json.loads(winners[0])["audit"] == local_log(project)[0]
        and len(local_log(project)) == 1
    )
    no_lock_left(project)


@pytest.fixture
def in_process_mlflow():
    """promote.run in this process sets MLflow's global tracking URI, and MLflow exports it as
    MLFLOW_TRACKING_URI: undo both, or every later `sail` subprocess would use this test's store."""
    names = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    )
    before = {name: os.environ.get(name) for name in names}
    yield
    import mlflow as mlflow_module

    mlflow_module.set_tracking_uri(None)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_a_live_lock_makes_the_next_promotion_wait_then_fail_naming_its_owner(
    project, in_process_mlflow
):
    version = register_version(project, MODEL, None)
    lease = {
        "owner": "zoe",
        "host": "ci-7",
        "pid": 1,
        "token": "t0",
        "since": "2026-01-01T00:00:00+00:00",
        "expires": "2999-01-01T00:00:00+00:00",
    }
    mlflow(project).create_registered_model(f"{MODEL}.sail-lock", description=json.dumps(lease))
    paths = ProjectPaths(project)
    settings = Settings.from_env(paths, {})
    keys = promote.Keys(signing.private_key(TEST_AUDIT_KEY, "test"), None)
    with pytest.raises(
        SailError,
        match=r"another promotion of promote_check is in progress: the lock is held by zoe on "
        r"ci-7 \(pid 1\) since 2026-01-01T00:00:00\+00:00, until 2999-01-01",
    ):
        promote.run(
            paths,
            load_params(paths),
            settings,
            keys,
            promote.Promotion(version, "none", "yan"),
            lock_timeout=1,
        )
    assert champion(project) is None
    mlflow(project).delete_registered_model(f"{MODEL}.sail-lock")
    assert (
        promote.run(
            paths, load_params(paths), settings, keys, promote.Promotion(version, "none", "yan")
        )["to"]
        == "1"
    )


HOLD_LOCK = """
import sys, time
from mlflow import MlflowClient
from sail_pipelines.delivery import audit
uri = sys.argv[1]
client = MlflowClient(uri, registry_uri=uri)
with audit.registry_lock(client, "promote_check", "killed-job", 5, lease=float(sys.argv[2])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_lock_left_by_a_killed_process_is_taken_over_and_audited(project, tmp_path):
    version = register_version(project, MODEL, None)
    uri = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, uri, "3"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()  # SIGKILL: no `finally`, the lock stays behind with its 3-second lease
    holder.wait()
    left = json.loads(mlflow(project).get_registered_model(f"{MODEL}.sail-lock").description)
    assert left["owner"] == "killed-job" and left["pid"] == holder.pid
    result = json.loads(
        ok(sail(project, "promote", "--version", version, "--approver", "ana")).stdout
    )
    assert result["to"] == "1" and champion(project) == "1"
    takeover = result["audit"]["lock_takeover"]
    assert takeover == {k: left[k] for k in ("owner", "host", "pid", "since", "expires")}
    assert history(project)[-1]["lock_takeover"] == takeover  # sealed in the signed record
    no_lock_left(project)


def test_a_tampered_audit_history_stops_promotion_and_rollback(project, stubs):
    for n in ("1", "2"):
        ok(
            sail(
                project, "promote", "--version", packaged(project, stubs, n), "--approver", "alice"
            )
        )
    client = mlflow(project)
    original = client.get_registered_model(MODEL).tags["sail.audit.000001"]
    record = json.loads(original)
    client.set_registered_model_tag(
        MODEL, "sail.audit.000001", json.dumps({**record, "approver": "mallory"})
    )
    refused(
        sail(project, "rollback"),
        "audit record sail.audit.000001 of promote_check does not match its signature: "
        "the audit history was tampered with",
        "rollback",
    )
    v3 = packaged(project, stubs, "3")
    refused(sail(project, "promote", "--version", v3), "does not match its signature")

    client.set_registered_model_tag(MODEL, "sail.audit.000001", original)
    refused(
        sail(project, "rollback", SAIL_AUDIT_KEY=signing.generate().text()),
        "was signed with key id",
        "rollback",
    )
    client.delete_registered_model_tag(MODEL, "sail.audit.000002")
    refused(
        sail(project, "rollback"),
        "promote_check has v2, but its audit history ends with v1 as champion",
        "rollback",
    )
    client.set_registered_model_alias(MODEL, "champion", "1")  # alias and history agree again
    assert (
        json.loads(ok(sail(project, "promote", "--version", v3, "--expect-champion", "1")).stdout)[
            "audit"
        ]["seq"]
        == 2
    )
    client.set_registered_model_alias(MODEL, "champion", "2")  # moved by hand in the MLflow UI
    refused(
        sail(project, "rollback"),
        "has v2, but its audit history ends with v3 as champion: the alias was moved outside sail",
        "rollback",
    )
    assert champion(project) == "2"
    no_lock_left(project)
