"""`sail deploy` on the real Docker daemon (host networking) behind the real nginx router and, for
Kubernetes, rendered manifests and kubectl against no cluster. The first test deploys the real
inference image `sail package` built (the session's `packaged_project`) and asks it /ready and
/predict; tests/test_promote.py does the same for production after a promotion. The others,
which need images that never get ready, crash, answer wrong predictions or carry other labels,
use small stand-ins built here from the base image: they honour SAIL_HOST/SAIL_PORT like the
inference image's `sail serve`, carry holdout rows where the inference image does (so the
deploy's smoke check runs on them) and the labels `sail package` writes, so the deploy code sees
what it sees with the real image. tests/test_bluegreen.py puts load on the router meanwhile."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import socket
import tarfile
from pathlib import Path

import docker
import pytest
import requests
import yaml
from mlflow import MlflowClient

from conftest import TEST_KEY, TEST_VERIFY_KEY, bake, ok, sail
from sail_pipelines.clients import router
from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.inference.smoke import free_port
from sail_pipelines.integrity import imagesign, signing

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"
# Seconds a "slow" stub takes to start listening, on every start: longer than the --timeout a
# deploy may get, so a rollback that starts it again must not be held to that timeout.
SLOW_START = 3
STUB_SERVER = (
    r"""
import hashlib, json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# stop like gunicorn does, not after docker's timeout
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

SLOW_START = %d
MODE, NAME = os.environ["STUB_MODE"], os.environ["STUB_NAME"]
KEY = os.environ.get("SAIL_VERIFY_KEY", "")
PRIVATE = "SAIL_SIGNING_KEY" in os.environ or "PRIVATE KEY" in "".join(os.environ.values())
print(f"stub {NAME} starting in mode {MODE}, private key: {PRIVATE}", flush=True)
if MODE == "crash":
    print("boom: the bundle does not verify", flush=True)
    sys.exit(3)
if MODE == "slow":  # a model that takes a while to load, on every start
    time.sleep(SLOW_START)

HOLDOUT = json.load(open("/app/models/accepted/holdout.json"))
LAG = 2.0  # seconds a "lagging" stub takes per answer after the smoke check
LOG_TO = os.environ.get("SAIL_PREDICTION_LOG", "-")

# A prediction-log line as the inference image writes it (stdout, or the file given).
def log(request_id, status, seconds, inputs, outputs):
    line = json.dumps({"time": time.time(), "request_id": request_id,
                       "route": "/predict", "status": status, "latency_ms": seconds * 1000,
                       "inputs": inputs, "outputs": outputs})
    with LOCK:
        if LOG_TO == "-":
            print(line, flush=True)
        else:
            with open(LOG_TO, "a") as out:
                out.write(line + "\n")
LOCK, COUNTS, CLASSES = threading.Lock(), {"posts": 0}, {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn and nginx's upstream keepalive

    def answer(self, status, fields):
        body = json.dumps(fields).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/metrics":
            return self.metrics()
        ready = MODE in ("ready", "slow", "wrong", "errors", "shifted", "lagging")
        ok = self.path == "/health" or (self.path == "/ready" and ready)
        key_sha256 = hashlib.sha256(KEY.encode()).hexdigest()
        fields = {"image": NAME, "key_sha256": key_sha256, "private_key": PRIVATE}
        self.answer(200 if ok else 503, fields)

    # /predict: the holdout's predictions (reversed when "wrong"). After the deploy's smoke
    # check (the first 5 requests), "errors" answers every 4th with a 500 and "shifted"
    # predicts class 1 only.
    def do_POST(self):
        started = time.monotonic()
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            return self.answer(400, {"error": "not JSON"})
        with LOCK:
            COUNTS["posts"] += 1
            late = COUNTS["posts"] > 5
            fourth = COUNTS["posts"] // 4 * 4 == COUNTS["posts"]
            status = 500 if MODE == "errors" and late and fourth else 200
            predictions = HOLDOUT["predictions"][:: -1 if MODE == "wrong" else 1]
            if MODE == "shifted" and late:
                predictions = [1 for _ in predictions]
            COUNTS[status] = COUNTS.get(status, 0) + 1
            for p in predictions if status == 200 else []:
                CLASSES[str(p)] = CLASSES.get(str(p), 0) + 1
        if MODE == "lagging" and late:
            time.sleep(LAG)
        self.answer(status, {"predictions": predictions, "image": NAME})
        records = body if isinstance(body, list) else body.get("records") or []
        log(self.headers.get("X-Request-ID") or "", status, time.monotonic() - started,
            {"x": [r.get("x") for r in records if isinstance(r, dict)]},
            {"prediction": predictions} if status == 200 else None)

    # The served counts in the inference image's metric names (all in the fastest bucket).
    def metrics(self):
        with LOCK:
            lines = ["# TYPE sail_requests counter"]
            total = sum(v for k, v in COUNTS.items() if k != "posts")
            for status in (200, 500):
                n = COUNTS.get(status, 0)
                lines.append(f'sail_requests_total{{route="/predict",status="{status}"}} {n}')
            lines.append("# TYPE sail_request_seconds histogram")
            for le in ("0.005", "0.01", "+Inf"):
                lines.append(f'sail_request_seconds_bucket{{route="/predict",le="{le}"}} {total}')
            lines.append(f'sail_request_seconds_count{{route="/predict"}} {total}')
            lines.append(f'sail_request_seconds_sum{{route="/predict"}} 0')
            lines.append("# TYPE sail_predictions counter")
            lines += [f'sail_predictions_total{{cls="{c}"}} {n}' for c, n in CLASSES.items()]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer((os.environ["SAIL_HOST"], int(os.environ["SAIL_PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
"""
    % SLOW_START
)
STUB_HOLDOUT = json.dumps({"records": [{"x": 1}, {"x": 2}], "predictions": [0, 1]})
STUB_DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY server.py /stub/server.py
COPY holdout.json /app/models/accepted/holdout.json
ARG STUB_MODE
ARG STUB_NAME
ENV STUB_MODE=$STUB_MODE STUB_NAME=$STUB_NAME SAIL_HOST=0.0.0.0 SAIL_PORT=8000
USER 10001
ENTRYPOINT ["python3", "-u", "/stub/server.py"]
"""


def _context() -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in (
            ("Dockerfile", STUB_DOCKERFILE),
            ("server.py", STUB_SERVER),
            ("holdout.json", STUB_HOLDOUT),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


class Stubs:
    """Builds stand-in inference images, tagged like `sail package` tags them, and removes them
    afterwards."""

    def __init__(self, client, base_image: str):
        self.client, self.base_image = client, base_image
        self.refs: set[str] = set()

    def build(
        self, ref: str, mode: str = "ready", model: str = "", version: str = "", bundle_id: str = ""
    ):
        labels = {
            "sail.test": "stub",
            "sail.model": model,
            "sail.model_version": version,
            "sail.bundle_id": bundle_id,
        }
        buildargs = {"STUB_MODE": mode, "STUB_NAME": ref, "BASE_IMAGE": self.base_image}
        image, _ = self.client.images.build(
            fileobj=_context(),
            custom_context=True,
            tag=ref,
            network_mode="host",
            rm=True,
            buildargs=buildargs,
            labels=labels,
        )
        self.refs.add(ref)
        return image

    def untag(self, *refs: str) -> None:
        for ref in refs:
            try:
                self.client.images.remove(ref, noprune=True)
            except docker.errors.ImageNotFound:
                pass

    def remove_all(self) -> None:
        self.untag(*self.refs)
        self.client.images.prune(filters={"dangling": True, "label": "sail.test=stub"})


@pytest.fixture(scope="session")
def docker_client(base_image):
    return docker.from_env()


def remove_containers(client, model: str, project: Path | None = None) -> None:
    """The model's containers, and the project's routers (nginx host processes)."""
    if project is not None:
        for prefix in (project / ".sail" / "router").glob("*"):
            router.stop(prefix)
    for container in client.containers.list(all=True, filters={"label": f"sail.model={model}"}):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # gone since it was listed (a restart policy's restart, a parallel removal)


def names(client, model: str) -> dict[str, str]:
    """The model's containers: name -> status."""
    listed = client.containers.list(all=True, filters={"label": f"sail.model={model}"})
    return {c.name: c.status for c in listed}


def registry(project: Path) -> MlflowClient:
    (project / ".mlflow").mkdir(exist_ok=True)
    uri = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def register_version(project: Path, model: str, image: str | None, alias: str = "candidate") -> str:
    """A registered version as the gate and `sail package` leave it: accepted bundle id, image ref,
    an alias."""
    client = registry(project)
    try:
        client.get_registered_model(model)
    except Exception:  # noqa: BLE001 - first version: the model does not exist yet
        client.create_registered_model(model)
    version = client.create_model_version(model, source=str(project / "models" / "accepted"))
    bundle_id = f"bundle-v{version.version}"
    client.set_model_version_tag(model, version.version, "sail.accepted_bundle_id", bundle_id)
    if image:
        client.set_model_version_tag(model, version.version, "sail.image", image)
    if alias:
        client.set_registered_model_alias(model, alias, version.version)
    return str(version.version)


def publish_signed(client, ref: str, key: str = TEST_KEY) -> str:
    """Push an image to the local registry and sign its digest as `sail publish` does; the
    digest."""
    repository, _, tag = ref.rpartition(":")
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    digest = client.images.get_registry_data(ref).id
    settings = Settings.from_env(ProjectPaths(Path("/nonexistent")), {"SAIL_REGISTRY": REGISTRY})
    imagesign.sign(settings, ref, digest, signing.private_key(key, "test key"))
    return digest


def served(port: int) -> dict:
    response = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
    assert response.status_code == 200
    return response.json()


def first_error_line(result, command="deploy") -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"sail {command}: error:") or lines[-1].startswith(
        f"sail {command}: error:"
    ), result.stderr
    return result.stderr


MODEL = "deploy_check"
REPO = "deploy-check/inference"


@pytest.fixture(scope="module")
def stubs(docker_client, base_image):
    made = Stubs(docker_client, base_image)
    yield made
    remove_containers(docker_client, MODEL)
    made.remove_all()


@pytest.fixture
def project(tmp_path, docker_client, stubs):
    root = bake(tmp_path, project_name="Deploy Check")
    yield root
    remove_containers(docker_client, MODEL, root)
    stubs.untag(f"{REPO}:staging", f"{REPO}:production", f"{REGISTRY}/{REPO}:staging")


def package(project: Path, ref: str) -> None:
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports" / "package.json").write_text(
        json.dumps({"image": ref, "version": "1", "model": MODEL})
    )


def deploy(project: Path, *args: str, **env: str):
    return sail(project, "deploy", *args, **env)


def serves_the_accepted_model(project: Path, port: int) -> dict:
    """/ready, then /predict on the holdout rows the accepted bundle carries: the very predictions
    the metric step made for them."""
    url = f"http://127.0.0.1:{port}"
    assert requests.get(f"{url}/ready", timeout=5).status_code == 200
    holdout = json.loads((project / "models" / "accepted" / "holdout.json").read_text())
    answer = requests.post(f"{url}/predict", json=holdout["records"], timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == holdout["predictions"]
    return answer.json()


@pytest.fixture
def real_project(packaged_project, tmp_path, docker_client):
    """A copy of the packaged default project; its containers and environment tags go afterwards."""
    project = tmp_path / packaged_project.name
    shutil.copytree(packaged_project, project, symlinks=True)
    yield project
    remove_containers(docker_client, "sail_model", project)
    for environment in ("staging", "production"):
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"sail-model/inference:{environment}", noprune=True)


@pytest.mark.timeout(3000)  # the first test to ask for packaged_project builds the image
def test_staging_runs_the_packaged_inference_image(real_project, docker_client):
    image = json.loads((real_project / "reports" / "package.json").read_text())["image"]
    port = free_port()
    deployed = ok(deploy(real_project, "--environment", "staging", "--port", str(port)))
    out = json.loads(deployed.stdout)
    assert out["container"] == "sail-model-staging-blue" and out["image"] == image
    assert out["smoke"] == {"rows": 20, "matched": True}  # the holdout rows inside the image
    assert out["tag"]["tag"] == "sail-model/inference:staging" and out["tag"]["moved"] is True
    answer = serves_the_accepted_model(real_project, port)  # through the router
    assert answer["model_version"] == "1"
    container = docker_client.containers.get("sail-model-staging-blue")
    assert container.image.id == docker_client.images.get(image).id
    assert container.attrs["Config"]["User"] == "10001:10001"


def test_staging_deploy_serves_on_loopback_and_moves_the_tag(project, stubs, docker_client):
    image = stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    port = free_port()
    result = deploy(project, "--environment", "staging", "--port", str(port))
    ok(result)
    out = json.loads(result.stdout)
    assert out["container"] == "deploy-check-staging-blue" and out["color"] == "blue"
    assert out["url"] == f"http://127.0.0.1:{port}" and out["upstream"] != out["url"]
    assert out["image"] == f"{REPO}:c0ffee-v1" and out["replaced"] is None
    assert out["smoke"] == {"rows": 2, "matched": True}
    assert out["tag"] == {
        "tag": f"{REPO}:staging",
        "image_id": image.id,
        "moved": True,
        "pushed": False,
    }
    answer = served(port)
    assert answer["image"] == f"{REPO}:c0ffee-v1"
    # The container got the public key, and no private key: in its environment or anywhere else.
    assert (
        answer["key_sha256"] == hashlib.sha256(TEST_VERIFY_KEY.encode()).hexdigest()
        and answer["private_key"] is False
    )
    assert TEST_KEY not in result.stdout + result.stderr
    container = docker_client.containers.get("deploy-check-staging-blue")
    assert not any(
        e.startswith(("SAIL_SIGNING_KEY=", "SAIL_AUDIT_KEY="))
        for e in container.attrs["Config"]["Env"]
    )
    assert "PRIVATE KEY" not in json.dumps(container.attrs)
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    upstream_port = out["upstream"].rsplit(":", 1)[1]
    assert {"SAIL_HOST=127.0.0.1", f"SAIL_PORT={upstream_port}"} <= set(
        container.attrs["Config"]["Env"]
    )
    assert docker_client.images.get(f"{REPO}:staging").id == image.id


def test_redeploy_switches_colors_and_keeps_the_previous_one(project, stubs, docker_client):
    port = free_port()
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(deploy(project, "--environment", "staging", "--port", str(port)))
    second = stubs.build(f"{REPO}:d00d-v2")
    package(project, f"{REPO}:d00d-v2")
    out = json.loads(ok(deploy(project, "--environment", "staging")).stdout)  # the port stays
    assert (out["color"], out["replaced"]) == ("green", f"{REPO}:c0ffee-v1")
    assert out["previous_container"] == "deploy-check-staging-blue"
    assert served(port)["image"] == f"{REPO}:d00d-v2"
    # the old one stays, stopped, for `sail rollback`
    assert names(docker_client, MODEL) == {
        "deploy-check-staging-blue": "exited",
        "deploy-check-staging-green": "running",
    }
    assert docker_client.images.get(f"{REPO}:staging").id == second.id
    state = json.loads((project / ".sail" / "router" / "staging" / "state.json").read_text())
    assert (state["port"], state["live"]["color"], state["previous"]["color"]) == (
        port,
        "green",
        "blue",
    )
    assert state["live"]["image"] == f"{REPO}:d00d-v2"
    # A third deploy replaces the stopped one: blue again, green kept.
    stubs.build(f"{REPO}:e1-v3")
    package(project, f"{REPO}:e1-v3")
    out = json.loads(ok(deploy(project, "--environment", "staging")).stdout)
    assert (out["color"], out["replaced"]) == ("blue", f"{REPO}:d00d-v2")
    assert served(port)["image"] == f"{REPO}:e1-v3"
    assert names(docker_client, MODEL) == {
        "deploy-check-staging-blue": "running",
        "deploy-check-staging-green": "exited",
    }


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("never", "/ready did not answer 200 within 2s"),
        ("crash", "the container exited"),
        ("wrong", "smoke test: served predictions differ from the metric step's at rows [0, 1]"),
    ],
)
def test_a_new_image_that_fails_leaves_the_old_one_serving(
    project, stubs, docker_client, mode, reason
):
    port = free_port()
    good = stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    ok(deploy(project, "--environment", "staging", "--port", str(port)))
    state = project / ".sail" / "router" / "staging" / "state.json"
    before = state.read_text()
    stubs.build(f"{REPO}:bad-{mode}", mode=mode)
    package(project, f"{REPO}:bad-{mode}")
    result = deploy(project, "--environment", "staging", "--timeout", "2")
    stderr = first_error_line(result)
    assert f"{REPO}:bad-{mode} was not switched to at http://127.0.0.1:" in stderr
    assert reason in stderr, stderr
    assert f"staging still serves deploy-check-staging-blue ({REPO}:c0ffee-v1)" in stderr
    # the log tail
    assert f"stub {REPO}:bad-{mode} starting in mode {mode}, private key: False" in stderr
    if mode == "crash":
        assert "boom: the bundle does not verify" in stderr
    assert TEST_KEY not in result.stdout + result.stderr
    assert served(port)["image"] == f"{REPO}:c0ffee-v1"
    assert names(docker_client, MODEL) == {"deploy-check-staging-blue": "running"}
    assert state.read_text() == before  # nothing recorded
    assert docker_client.images.get(f"{REPO}:staging").id == good.id  # the tag did not move


def test_a_first_deploy_that_fails_leaves_nothing_running(project, stubs, docker_client):
    stubs.build(f"{REPO}:bad-crash", mode="crash")
    package(project, f"{REPO}:bad-crash")
    result = deploy(
        project, "--environment", "staging", "--port", str(free_port()), "--timeout", "10"
    )
    assert "staging still serves nothing" in first_error_line(result)
    assert not docker_client.containers.list(all=True, filters={"label": f"sail.model={MODEL}"})
    assert not (project / ".sail" / "router" / "staging" / "state.json").exists()
    assert router.master_pid(project / ".sail" / "router" / "staging") is None


def test_a_port_taken_by_another_process_is_refused(project, stubs, docker_client):
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = deploy(project, "--environment", "staging", "--port", str(port))
    assert (
        f"127.0.0.1:{port} is in use by another process: choose another --port"
        in first_error_line(result)
    )
    assert not docker_client.containers.list(all=True, filters={"label": f"sail.model={MODEL}"})


def test_staging_with_a_registry_pushes_the_moved_tag(project, stubs, docker_client):
    ref = f"{REGISTRY}/{REPO}:c0ffee-v1"
    image = stubs.build(ref)
    digest = publish_signed(docker_client, ref)
    package(project, ref)
    out = json.loads(
        ok(
            deploy(
                project,
                "--environment",
                "staging",
                "--port",
                str(free_port()),
                SAIL_REGISTRY=REGISTRY,
            )
        ).stdout
    )
    assert out["signature"] == {
        "digest": digest,
        "key_id": signing.private_key(TEST_KEY, "t").key_id,
    }
    assert out["tag"] == {
        "tag": f"{REGISTRY}/{REPO}:staging",
        "image_id": image.id,
        "moved": True,
        "pushed": True,
    }
    tags = requests.get(f"http://{REGISTRY}/v2/{REPO}/tags/list", timeout=10).json()["tags"]
    assert "staging" in tags


def test_production_runs_the_champions_image_only(project, stubs, docker_client):
    result = deploy(project, "--environment", "production", "--port", str(free_port()))
    assert (
        f"image {REPO}:production is not on this host: `sail promote` moves it"
        in first_error_line(result)
    )
    v1 = register_version(project, MODEL, f"{REPO}:c0ffee-v1", alias="champion")
    image = stubs.build(f"{REPO}:c0ffee-v1", model=MODEL, version=v1, bundle_id=f"bundle-v{v1}")
    image.tag(REPO, "production")
    port = free_port()
    out = json.loads(ok(deploy(project, "--environment", "production", "--port", str(port))).stdout)
    assert out["champion"] == "1" and out["container"] == "deploy-check-production-blue"
    assert out["tag"]["moved"] is False  # promotion already moved it
    assert served(port)["image"] == f"{REPO}:c0ffee-v1"

    # The production tag on an image of another version (moved by hand): refused, production keeps
    # serving.
    stubs.build(f"{REPO}:d00d-v2", model=MODEL, version="2", bundle_id="bundle-v2").tag(
        REPO, "production"
    )
    result = deploy(project, "--environment", "production", "--port", str(port))
    assert (
        f"{REPO}:production holds v2, not champion v1 of {MODEL} (bundle bundle-v1)"
        in first_error_line(result)
    )
    assert served(port)["image"] == f"{REPO}:c0ffee-v1"


def test_production_without_a_champion_is_refused(project, stubs):
    stubs.build(f"{REPO}:c0ffee-v1", model=MODEL, version="1", bundle_id="bundle-v1").tag(
        REPO, "production"
    )
    register_version(project, MODEL, f"{REPO}:c0ffee-v1")  # a candidate, never promoted
    result = deploy(project, "--environment", "production", "--port", str(free_port()))
    assert (
        f"{MODEL} has no champion: `sail promote` one before deploying to production"
        in first_error_line(result)
    )


def test_refusals_before_anything_runs(project, stubs):
    assert (
        "no reports/package.json: run `sail package` before deploying to staging"
        in first_error_line(deploy(project, "--environment", "staging"))
    )
    package(project, f"{REPO}:never-built")
    assert f"image {REPO}:never-built is not on this host: run `sail package`" in first_error_line(
        deploy(project, "--environment", "staging")
    )
    (project / "reports" / "package.json").write_text("[]")
    assert "reports/package.json names no image" in first_error_line(
        deploy(project, "--environment", "staging")
    )
    bad = deploy(project, "--environment", "prod")
    assert (
        bad.returncode == 2
        and "sail deploy: error: argument --environment: invalid choice: 'prod'" in bad.stderr
    )
    package(project, f"{REPO}:c0ffee-v1")
    down = deploy(
        project, "--environment", "staging", DOCKER_HOST="unix:///nonexistent/docker.sock"
    )
    assert "Docker is not reachable at unix:///nonexistent/docker.sock" in first_error_line(down)
    nokey = sail(project, "deploy", "--environment", "staging", key=None)
    assert "SAIL_VERIFY_KEY is not set" in first_error_line(nokey)


def test_kubernetes_manifests(project, stubs, docker_client):
    ref = f"{REGISTRY}/{REPO}:c0ffee-v1"
    stubs.build(ref)
    digest = f"{REGISTRY}/{REPO}@{publish_signed(docker_client, ref)}"
    package(project, ref)
    # The deploying job needs the public key only.
    out = json.loads(
        ok(
            deploy(
                project,
                "--environment",
                "staging",
                "--target",
                "kubernetes",
                "--render-only",
                SAIL_REGISTRY=REGISTRY,
                SAIL_VERIFY_KEY=TEST_VERIFY_KEY,
                key=None,
            )
        ).stdout
    )
    # Blue-green (the default): the first color, its autoscaler, the Service that selects it, the
    # disruption budget and network policy, and the Prometheus Operator's resources
    # (tests/test_kubernetes_resources.py validates them all against their schemas).
    assert out["manifests"] == [
        f"deploy/staging/{name}"
        for name in (
            "deployment.yaml",
            "hpa.yaml",
            "service.yaml",
            "pdb.yaml",
            "networkpolicy.yaml",
            "monitoring/servicemonitor.yaml",
            "monitoring/prometheusrule.yaml",
        )
    ]
    assert out["strategy"] == "blue-green" and out["color"] == "blue"
    assert out["deployed_image"] == digest and "tag" not in out  # render-only moves nothing
    deployment = yaml.safe_load((project / "deploy" / "staging" / "deployment.yaml").read_text())
    service = yaml.safe_load((project / "deploy" / "staging" / "service.yaml").read_text())
    assert (
        deployment["kind"] == "Deployment"
        and deployment["metadata"]["name"] == "deploy-check-staging-blue"
    )
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == digest
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": 8000,
        "scheme": "HTTP",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert (
        container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
        and container["resources"]["requests"]["cpu"] == "250m"
    )
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and pod["securityContext"]["runAsUser"] == 10001
    )
    assert (
        container["securityContext"]["allowPrivilegeEscalation"] is False
        and container["securityContext"]["readOnlyRootFilesystem"]
    )
    key_env = [e for e in container["env"] if e["name"].startswith("SAIL_") and "KEY" in e["name"]]
    # the public key; no Secret needed
    assert key_env == [{"name": "SAIL_VERIFY_KEY", "value": TEST_VERIFY_KEY}]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert TEST_KEY not in "".join(
        p.read_text() for p in (project / "deploy").rglob("*") if p.is_file()
    )

    # Without a registry digest, the versioned tag (never the moving environment tag) is what the
    # cluster pulls.
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    out = json.loads(
        ok(
            deploy(
                project,
                "--environment",
                "staging",
                "--target",
                "kubernetes",
                "--render-only",
                "--port",
                "8080",
            )
        ).stdout
    )
    assert out["deployed_image"] == f"{REPO}:c0ffee-v1"
    assert out["color"] == "green"  # the other color than the last render's: the next switch
    service = yaml.safe_load((project / "deploy" / "staging" / "service.yaml").read_text())
    assert service["spec"]["ports"][0]["port"] == 8080


def test_kubernetes_apply_without_a_cluster_is_a_clear_error(
    project, stubs, docker_client, tmp_path
):
    stubs.build(f"{REPO}:c0ffee-v1")
    package(project, f"{REPO}:c0ffee-v1")
    result = deploy(
        project,
        "--environment",
        "staging",
        "--target",
        "kubernetes",
        KUBECONFIG=str(tmp_path / "no-such-config"),
    )
    assert "no Kubernetes cluster configured" in first_error_line(result)
    assert f"apply them with `kubectl apply -f {project / 'deploy' / 'staging'}`" in result.stderr
    assert (project / "deploy" / "staging" / "deployment.yaml").is_file()

    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [
                    {"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "contexts": [{"name": "gone", "context": {"cluster": "gone"}}],
            }
        )
    )
    result = deploy(
        project, "--environment", "staging", "--target", "kubernetes", KUBECONFIG=str(config)
    )
    # Blue-green reads the Service's color first: the unreachable server stops it there.
    line = first_error_line(result)
    assert "cannot read service/deploy-check-staging on context 'gone'" in line
    assert "refused" in line and "nothing was applied" in line
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(f"{REPO}:staging")  # nothing deployed: the tag did not move
