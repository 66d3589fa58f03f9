"""`sail deploy --target kubernetes` applying its manifests, against a scripted stand-in `kubectl`
(as tests/test_report.py stands in for the GitHub API): an executable named kubectl, first on
PATH, that records every call (argv, stdin, the environment, and the manifests of `apply -f DIR`
as they were at that moment) and answers each subcommand as the test's scenario says. The images
are real (Docker), built in a second from the base image with the labels `sail package` writes;
the signed ones are pushed to the local registry so the cluster gets them by digest."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from conftest import TEST_KEY, TEST_VERIFY_KEY, bake, ok, sail
from test_deploy import (  # noqa: F401 - docker_client is a fixture
    docker_client,
    publish_signed,
    register_version,
)

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"
MODEL = "kube_check"
REPO = "kube-check/inference"
DEPLOYMENT = "kube-check"  # <model>-<environment> with the model's repository name
CONTEXT = "stand-in-cluster"
HMAC_SECRET = "team-hmac-secret-7d41aa"

KUBECTL = r"""#!{python}
import json, os, stat, sys
from pathlib import Path

here = Path(__file__).resolve().parent
argv = sys.argv[1:]
words = [a for a in argv if not a.startswith("-")]
two = (["config"], ["rollout"], ["get"])
command = " ".join(words[:2]) if words[:1] in two else (words or [""])[0]
files = {{}}
for at, arg in enumerate(argv[:-1]):
    if command == "apply" and arg == "-f":
        target = Path(argv[at + 1])
        for path in sorted(target.glob("*.yaml")) if target.is_dir() else [target]:
            files[path.name] = path.read_text()
piped = sys.stdin is not None and stat.S_ISFIFO(os.fstat(0).st_mode)
stdin = sys.stdin.read() if piped else ""  # only what sail pipes in
call = {{"command": command, "argv": argv, "stdin": stdin, "files": files}}
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{**call, "env": dict(os.environ)}}) + "\n")
answer = json.loads((here / "scenario.json").read_text()).get(command, {{}})
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("rc", 0))
"""


class Cluster:
    """The stand-in kubectl in its own bin directory, its scenario and what it was asked."""

    def __init__(self, directory: Path):
        self.bin = directory
        self.bin.mkdir()
        script = self.bin / "kubectl"
        script.write_text(KUBECTL.format(python=sys.executable))
        script.chmod(0o755)
        self.answer()

    def answer(self, **overrides: dict) -> None:
        """Per subcommand (apply, rollout_status, get_secret, get_service, wait, ...): rc,
        stdout, stderr. No Service yet (the first blue-green deploy starts blue), no Prometheus
        Operator."""
        scenario = {
            "config current-context": {"stdout": f"{CONTEXT}\n"},
            "apply": {
                "stdout": f"deployment.apps/{DEPLOYMENT}-x configured\nservice/{DEPLOYMENT}-x "
                "unchanged\n"
            },
            "rollout status": {"stdout": "deployment successfully rolled out\n"},
            "get secret": {"stdout": f"secret/{MODEL.replace('_', '-')}-signing-key\n"},
            "get service": {"stdout": ""},
            "api-resources": {"stdout": ""},
            "wait": {"stdout": "inferenceservice.serving.kserve.io/x condition met\n"},
        }
        scenario.update({name.replace("_", " "): answer for name, answer in overrides.items()})
        (self.bin / "scenario.json").write_text(json.dumps(scenario))

    def calls(self, command: str | None = None) -> list[dict]:
        log = self.bin / "calls.jsonl"
        if not log.is_file():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in calls if command is None or c["command"] == command]

    def env(self) -> dict[str, str]:
        """PATH with the stand-in first: Debian's /usr/bin/kubectl is never reached."""
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    return Cluster(tmp_path / "kubectl-bin")


@pytest.fixture
def project(tmp_path, docker_client):
    root = bake(tmp_path, project_name="Kube Check")
    yield root
    for tag in (f"{REPO}:staging", f"{REPO}:production", f"{REGISTRY}/{REPO}:staging"):
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def images(docker_client, base_image):
    """build(ref, **labels): an image FROM the base image that only adds labels (no layer), tagged
    ref; every tag is removed at the end."""
    made: list[str] = []

    def build(ref: str, version: str = "", bundle_id: str = ""):
        labels = {
            "sail.test": "kubernetes-apply",
            "sail.model": MODEL,
            "sail.model_version": version,
            "sail.bundle_id": bundle_id,
            "sail.test.ref": ref,  # another ref, another image id
        }
        dockerfile = f"FROM {base_image}\n"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile.encode()))
        buffer.seek(0)
        image, _ = docker_client.images.build(
            fileobj=buffer, custom_context=True, tag=ref, labels=labels, rm=True
        )
        made.append(ref)
        return image

    yield build
    for ref in made:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref, noprune=True)


def registry_digest(client, ref: str) -> str | None:
    try:
        return client.images.get_registry_data(ref).id
    except docker.errors.APIError:  # NotFound: the tag is not in the registry
        return None


def package(project: Path, ref: str) -> None:
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports" / "package.json").write_text(json.dumps({"image": ref, "model": MODEL}))


def deploy(project: Path, cluster: Cluster, environment: str, *args: str, **env: str):
    return sail(
        project,
        "deploy",
        "--environment",
        environment,
        "--target",
        "kubernetes",
        "--timeout",
        "45",
        *args,
        **cluster.env(),
        **env,
    )


def error_line(result) -> str:
    """The one line a refused deploy prints (no traceback)."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sail deploy: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def applied(call: dict) -> dict[str, dict]:
    """kind/name: manifest, for every document kubectl was given (files and stdin)."""
    texts = [*call["files"].values(), call["stdin"]]
    documents = [d for text in texts for d in yaml.safe_load_all(text) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def container_env(manifests: dict[str, dict], name: str) -> list[dict]:
    [container] = manifests[f"Deployment/{name}"]["spec"]["template"]["spec"]["containers"]
    return container["env"]


def no_private_key_in(calls: list[dict]) -> None:
    assert calls
    for call in calls:
        text = json.dumps(call)
        assert TEST_KEY not in text and "PRIVATE KEY" not in text, call["command"]
        assert not {"SAIL_SIGNING_KEY", "SAIL_AUDIT_KEY"} & set(call["env"]), call["command"]


def test_a_successful_apply_hands_the_rendered_manifests_over_and_moves_the_tag(
    project, cluster, images, docker_client
):
    ref = f"{REGISTRY}/{REPO}:c0ffee-{uuid.uuid4().hex[:8]}"
    image = images(ref)
    digest = publish_signed(docker_client, ref)
    package(project, ref)
    result = ok(deploy(project, cluster, "staging", SAIL_REGISTRY=REGISTRY))
    out = json.loads(result.stdout)

    name = f"{DEPLOYMENT}-staging"
    pinned = f"{REGISTRY}/{REPO}@{digest}"
    # Blue-green: which color the Service selects (none yet: blue starts), everything but the
    # Service, the rollout of the new color, and only then the Service (the switch); no
    # Prometheus Operator on this cluster, so monitoring/ is left out.
    assert [c["command"] for c in cluster.calls()] == [
        "config current-context",
        "get service",
        "apply",
        "rollout status",
        "apply",
        "api-resources",
    ]
    first, switch = cluster.calls("apply")
    # What the cluster received is what was rendered under deploy/staging/, pinned by digest.
    directory = project / "deploy" / "staging"
    rendered = {p.name: p.read_text() for p in directory.glob("*.yaml")}
    assert {**first["files"], **switch["files"]} == rendered and set(switch["files"]) == {
        "service.yaml"
    }
    assert set(rendered) == {
        "deployment.yaml",
        "hpa.yaml",
        "networkpolicy.yaml",
        "pdb.yaml",
        "service.yaml",
    }
    assert str(directory / "deployment.yaml") in first["argv"]
    manifests = {**applied(first), **applied(switch)}
    assert set(manifests) == {
        f"Deployment/{name}-blue",
        f"HorizontalPodAutoscaler/{name}-blue",
        f"Service/{name}",
        f"PodDisruptionBudget/{name}",
        f"NetworkPolicy/{name}",
    }
    [container] = manifests[f"Deployment/{name}-blue"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == pinned and out["deployed_image"] == pinned
    assert manifests[f"Deployment/{name}-blue"]["spec"]["replicas"] == 1
    assert manifests[f"Service/{name}"]["spec"]["selector"]["sail/color"] == "blue"
    assert out["color"] == "blue" and out["strategy"] == "blue-green"
    assert out["monitoring"].startswith(f"not applied: no Prometheus Operator on '{CONTEXT}'")
    # The rollout waited on that Deployment, in the namespace the manifests went to (the
    # context's: neither names another).
    [rollout] = cluster.calls("rollout status")
    assert f"deployment/{name}-blue" in rollout["argv"] and "--timeout=45s" in rollout["argv"]
    argv = first["argv"] + switch["argv"] + rollout["argv"]
    assert not any(a.startswith(("-n", "--namespace")) for a in argv)
    assert all("namespace" not in m["metadata"] for m in manifests.values())

    assert out["context"] == CONTEXT and out["applied"][0].startswith("deployment.apps/")
    assert out["tag"] == {
        "tag": f"{REGISTRY}/{REPO}:staging",
        "image_id": image.id,
        "moved": True,
        "pushed": True,
    }
    assert registry_digest(docker_client, f"{REGISTRY}/{REPO}:staging") == digest


def test_a_failed_rollout_names_the_deployment_and_the_tag_stays(
    project, cluster, images, docker_client
):
    # staging runs image A ...
    first = f"{REGISTRY}/{REPO}:a-{uuid.uuid4().hex[:8]}"
    first_image = images(first)
    first_digest = publish_signed(docker_client, first)
    package(project, first)
    ok(deploy(project, cluster, "staging", SAIL_REGISTRY=REGISTRY))
    staging = f"{REGISTRY}/{REPO}:staging"
    assert registry_digest(docker_client, staging) == first_digest

    # ... and image B never becomes ready.
    second = f"{REGISTRY}/{REPO}:b-{uuid.uuid4().hex[:8]}"
    images(second)
    publish_signed(docker_client, second)
    package(project, second)
    cluster.answer(
        rollout_status={
            "rc": 1,
            "stderr": f'Waiting for deployment "{DEPLOYMENT}-staging" rollout to finish: 0 of 1 '
            "updated replicas are available...\nerror: timed out waiting for the condition\n",
        }
    )
    line = error_line(deploy(project, cluster, "staging", SAIL_REGISTRY=REGISTRY))
    assert (
        f"deployment/{DEPLOYMENT}-staging-blue did not become ready on context '{CONTEXT}'" in line
    )
    assert "timed out waiting for the condition" in line and "still selects the previous" in line
    # The new color was applied, and then it failed: the Service was not switched to it.
    assert len(cluster.calls("apply")) == 3
    assert "service.yaml" not in cluster.calls("apply")[-1]["files"]
    # The environment's tag did not move: locally and in the registry it still names A.
    assert docker_client.images.get(staging).id == first_image.id
    assert registry_digest(docker_client, staging) == first_digest

    # A failed apply stops before the rollout, with its own line.
    cluster.answer(apply={"rc": 1, "stderr": "error: the server doesn't have a resource type\n"})
    line = error_line(deploy(project, cluster, "staging", SAIL_REGISTRY=REGISTRY))
    assert f"failed on context '{CONTEXT}': error: the server doesn't have a resource type" in line
    assert len(cluster.calls("rollout status")) == 2
    assert registry_digest(docker_client, staging) == first_digest


def test_blue_green_starts_the_color_the_service_does_not_select_and_canary_goes_to_kserve(
    project, cluster, images, docker_client
):
    images(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    name = f"{DEPLOYMENT}-staging"
    # The cluster's Service selects blue (whatever the last render here said): green starts,
    # and with the Prometheus Operator on the cluster, monitoring/ goes too, after the switch.
    live = {"spec": {"selector": {"app.kubernetes.io/instance": name, "sail/color": "blue"}}}
    operator = {
        "stdout": "prometheusrules.monitoring.coreos.com\nservicemonitors.monitoring.coreos.com\n"
    }
    cluster.answer(get_service={"stdout": json.dumps(live)}, **{"api-resources": operator})
    out = json.loads(ok(deploy(project, cluster, "staging")).stdout)
    assert out["color"] == "green" and "monitoring" not in out
    first, switch, monitoring = cluster.calls("apply")
    assert f"Deployment/{name}-green" in applied(first)
    assert applied(switch)[f"Service/{name}"]["spec"]["selector"]["sail/color"] == "green"
    assert set(applied(monitoring)) == {f"ServiceMonitor/{name}", f"PrometheusRule/{name}"}
    [rollout] = cluster.calls("rollout status")
    assert f"deployment/{name}-green" in rollout["argv"]

    # Canary: one InferenceService with the weight, applied at once, waited on until Ready; the
    # blue-green files are gone from deploy/staging/.
    out = json.loads(
        ok(deploy(project, cluster, "staging", "--strategy", "canary", "--weight", "20")).stdout
    )
    assert out["strategy"] == "canary" and "color" not in out
    canary = cluster.calls("apply")[3]
    manifests = applied(canary)
    assert set(manifests) == {
        f"InferenceService/{name}",
        f"PodDisruptionBudget/{name}",
        f"NetworkPolicy/{name}",
    }
    assert manifests[f"InferenceService/{name}"]["spec"]["predictor"]["canaryTrafficPercent"] == 20
    [wait] = cluster.calls("wait")
    assert wait["argv"][:3] == ["wait", "--for=condition=Ready", f"inferenceservice/{name}"]
    assert len(cluster.calls("rollout status")) == 1
    assert not (project / "deploy" / "staging" / "deployment.yaml").exists()

    # Shadow: what staging's tag names (the canary just deployed) answers, the new image listens
    # through the Ingress' mirror; both InferenceServices are waited on.
    images(f"{REPO}:c0ffee-v2")
    package(project, f"{REPO}:c0ffee-v2")
    out = json.loads(ok(deploy(project, cluster, "staging", "--strategy", "shadow")).stdout)
    manifests = applied(cluster.calls("apply")[5])
    assert {f"InferenceService/{name}", f"InferenceService/{name}-shadow", f"Ingress/{name}"} <= (
        set(manifests)
    )
    stable = manifests[f"InferenceService/{name}"]["spec"]["predictor"]["containers"][0]
    shadow = manifests[f"InferenceService/{name}-shadow"]["spec"]["predictor"]["containers"][0]
    assert (stable["image"], shadow["image"]) == (f"{REPO}:c0ffee-v1", f"{REPO}:c0ffee-v2")
    assert cluster.calls("wait")[-1]["argv"][2:4] == [
        f"inferenceservice/{name}",
        f"inferenceservice/{name}-shadow",
    ]

    # KServe not ready: the line names the InferenceService and says the old revision serves.
    cluster.answer(wait={"rc": 1, "stderr": "error: timed out waiting for the condition\n"})
    line = error_line(deploy(project, cluster, "staging", "--strategy", "canary", "--weight", "10"))
    assert f"inferenceservice/{name} did not become ready" in line
    assert "KServe keeps the previous revision serving" in line


@pytest.mark.slow  # MLflow's registry database, then two deploys: about 16 s
def test_production_deploys_the_champion_only(project, cluster, images, docker_client):
    # The production tag holds v1's image, but v2 is the champion: refused before any apply.
    images(f"{REPO}:c0ffee-v1", version="1", bundle_id="bundle-v1").tag(REPO, "production")
    register_version(project, MODEL, f"{REPO}:c0ffee-v1", alias="candidate")
    register_version(project, MODEL, f"{REPO}:c0ffee-v2", alias="champion")
    line = error_line(deploy(project, cluster, "production"))
    assert f"{REPO}:production holds v1, not champion v2 of {MODEL} (bundle bundle-v2)" in line
    assert cluster.calls("apply") == [] and cluster.calls() == []
    assert not (project / "deploy" / "production").exists()

    # The champion's own image goes out, with production's replicas.
    images(f"{REPO}:c0ffee-v2", version="2", bundle_id="bundle-v2").tag(REPO, "production")
    out = json.loads(ok(deploy(project, cluster, "production")).stdout)
    assert out["champion"] == "2" and out["deployed_image"] == f"{REPO}:c0ffee-v2"
    apply, _ = cluster.calls("apply")
    deployment = applied(apply)[f"Deployment/{DEPLOYMENT}-production-blue"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (f"{REPO}:c0ffee-v2")
    assert out["tag"]["moved"] is False  # the production tag already named it; promotion moves it


def test_the_verify_key_reaches_the_cluster_and_no_private_key_does(
    project, cluster, images, docker_client
):
    # Ed25519: the public key is written into the Deployment (it is no secret); nothing kubectl
    # got (arguments, input, manifests, its environment) holds a private key.
    images(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(deploy(project, cluster, "staging"))  # the runner gives sail SAIL_SIGNING_KEY too
    manifests = applied(cluster.calls("apply")[0])
    assert {"name": "SAIL_VERIFY_KEY", "value": TEST_VERIFY_KEY} in container_env(
        manifests, f"{DEPLOYMENT}-staging-blue"
    )
    assert not [m for m in manifests.values() if m["kind"] == "Secret"]
    no_private_key_in(cluster.calls())


def test_with_hmac_the_pods_read_the_secret_the_cluster_holds(
    project, cluster, images, docker_client
):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["signing"] = {"scheme": "hmac-sha256"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    images(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    secret = f"{MODEL.replace('_', '-')}-signing-key"

    # The Secret is missing (or cannot be read): refused before anything is applied, naming it.
    for missing, why in (
        ({"stdout": ""}, "not found"),  # what --ignore-not-found answers
        ({"rc": 1, "stderr": "Error from server (Forbidden): secrets is forbidden\n"}, "Forbidden"),
    ):
        cluster.answer(get_secret=missing)
        line = error_line(
            deploy(project, cluster, "staging", key=None, SAIL_VERIFY_KEY=HMAC_SECRET)
        )
        assert f"the Secret {secret} is not on context '{CONTEXT}' (" in line and why in line
        assert HMAC_SECRET not in line and cluster.calls("apply") == []

    cluster.answer()
    ok(deploy(project, cluster, "staging", key=None, SAIL_VERIFY_KEY=HMAC_SECRET))
    get = cluster.calls("get secret")[-1]
    assert get["argv"][:2] == ["get", "secret"] and secret in get["argv"]
    apply = cluster.calls("apply")[0]
    assert {
        "name": "SAIL_VERIFY_KEY",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "signing-key"}},
    } in container_env(applied(apply), f"{DEPLOYMENT}-staging-blue")
    # The shared secret (which also signs) reaches the cluster only through that Secret.
    for call in cluster.calls():
        assert HMAC_SECRET not in json.dumps(call), call["command"]
