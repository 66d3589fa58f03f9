"""Real servers on 127.0.0.1 for the team-mode tests, and the fixtures that start them.

- S3 (and STS, ECR): moto in server mode (ThreadedMotoServer). Its state lives in this test
  process, so a server stopped to simulate an outage comes back on the same port with its data.
- MLflow: the real `mlflow server` from the venv, SQLite backend store, artifacts in the moto
  bucket, either proxied by the server (--artifacts-destination) or written by the clients
  themselves (--no-serve-artifacts --default-artifact-root).
- FaultProxy: an HTTP reverse proxy in front of a real server that answers 5xx on demand or
  stops listening, for fault tests.
- The local image registry on 127.0.0.1:5000 (docker/prepare-machine starts it), and a second,
  password-protected registry (Debian's docker-registry with htpasswd) on a free port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import yaml

from ci_rules import SUITE_UNDER_CI

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCAL_REGISTRY = "127.0.0.1:5000"
BUCKET = "team"
REGION = "us-east-1"
# The MLflow server's own S3 identity (proxied artifacts are the server's business) ...
SERVER_AWS = {
    "AWS_ACCESS_KEY_ID": "mlflow-server-key",
    "AWS_SECRET_ACCESS_KEY": "mlflow-server-secret",
    "AWS_DEFAULT_REGION": REGION,
}
# ... and the pipeline's (what a CI job would hold).
CLIENT_AWS = {"AWS_ACCESS_KEY_ID": "sail-client-key", "AWS_SECRET_ACCESS_KEY": "sail-client-secret"}
REGISTRY_USER = "sail-ci"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    tail = (
        "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        if log and log.is_file()
        else ""
    )
    pytest.fail(f"{what} did not come up within {timeout:.0f}s{tail}")


class S3Server:
    """moto in server mode on its own port; stop() and start() simulate an outage, data intact."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Server":
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_until(
            lambda: requests.get(f"{self.endpoint}/moto-api/", timeout=2).ok,
            30,
            f"moto on {self.endpoint}",
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str = "s3") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test-reader",
            aws_secret_access_key="test-reader",
        )

    def keys(self, bucket: str = BUCKET, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str, bucket: str = BUCKET) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def quiet_mlflow_env() -> dict[str, str]:
    """The environment for a test's `mlflow server`: none of the tests' AWS or MLflow settings,
    and no job runner (MLflow 3 starts three huey consumer processes per server otherwise, which
    the tests never use and which take CPU from them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


class MlflowServer:
    """A real `mlflow server` with a SQLite store and its artifacts in the moto bucket."""

    def __init__(self, workdir: Path, s3: S3Server, prefix: str, proxied: bool):
        self.workdir, self.s3, self.prefix, self.proxied = workdir, s3, prefix, proxied
        self.port = free_port()
        self.db = workdir / "mlflow.db"
        self.log = workdir / "server.log"
        self._proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifact_root(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}"

    def start(self) -> "MlflowServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = quiet_mlflow_env()
        if self.proxied:
            # The server reads and writes the bucket for its clients.
            cmd += ["--artifacts-destination", self.artifact_root]
            env.update(SERVER_AWS, MLFLOW_S3_ENDPOINT_URL=self.s3.endpoint)
        else:
            # Clients get s3:// artifact URIs and write there themselves; this server cannot even
            # reach S3.
            cmd += ["--no-serve-artifacts", "--default-artifact-root", self.artifact_root]
        self._proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            lambda: requests.get(f"{self.uri}/health", timeout=2).ok,
            120,
            f"mlflow server on {self.uri}",
            self.log,
        )
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.uri)


class FaultProxy:
    """HTTP reverse proxy in front of a real server: passes requests through, answers
    `fail_status` for the requests `fail_when(method, path)` picks, or stops listening (down())."""

    HOP = {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "host",
    }

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.fail_status: int | None = None
        self.fail_when: Callable[[str, str], bool] = lambda method, path: True
        self.fail_times: int | None = None
        self.fail_forwarded = False
        self.failed: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        status: int | None,
        when: Callable[[str, str], bool] = lambda method, path: True,
        times: int | None = None,
        forwarded: bool = False,
    ) -> None:
        """Answer `status` to the picked requests, the first `times` of them (all when None);
        `forwarded` lets the server act on them first, as when only the answer is lost."""
        self.fail_status, self.fail_when = status, when
        self.fail_times, self.fail_forwarded = times, forwarded

    def up(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self) -> None:
                body = self._body()
                if (
                    proxy.fail_status
                    and proxy.fail_when(self.command, self.path)
                    and proxy.fail_times != 0
                ):
                    proxy.failed.append(f"{self.command} {self.path}")
                    if proxy.fail_times is not None:
                        proxy.fail_times -= 1
                    if proxy.fail_forwarded:
                        self._forward(body)
                    payload = json.dumps(
                        {
                            "error_code": "TEMPORARILY_UNAVAILABLE",
                            "message": "injected by FaultProxy",
                        }
                    ).encode()
                    return self._answer(
                        proxy.fail_status, {"Content-Type": "application/json"}, payload
                    )
                upstream = self._forward(body)
                kept = {k: v for k, v in upstream.headers.items() if k.lower() not in proxy.HOP}
                self._answer(upstream.status_code, kept, upstream.content)

            def _forward(self, body: bytes) -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP}
                return requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=120,
                )

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = relay

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening: clients now get 'connection refused'."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class QuietHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: `reply` sends a whole answer; nothing is logged."""

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve `server` (bound to 127.0.0.1) from a daemon thread for the block; yields its URL.
    The one way the tests' stand-ins (fake GitHub API, tampering proxy, probe sites) run."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def registry_answers(address: str) -> bool:
    try:
        return requests.get(f"http://{address}/v2/", timeout=3).status_code in (200, 401)
    except requests.RequestException:
        return False


def ensure_machine(what: str, ready: Callable[[], bool]) -> None:
    """Run docker/prepare-machine when `ready` is false; under CI the machine must already be
    prepared."""
    if ready():
        return
    if SUITE_UNDER_CI:
        pytest.fail(f"{what} is not available: CI must run docker/prepare-machine before the tests")
    # below pytest-timeout's 900 s, so this is what reports a hang
    proc = subprocess.run(
        [str(ROOT / "docker" / "prepare-machine")], capture_output=True, text=True, timeout=600
    )
    if not ready():
        pytest.fail(
            f"{what} is not available after docker/prepare-machine (exit {proc.returncode}): "
            f"{proc.stderr[-2000:]}"
        )


def docker_answers() -> bool:
    return (
        subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        if shutil.which("docker")
        else False
    )


class AuthRegistry:
    """Debian's docker-registry with htpasswd (bcrypt) basic auth, on a free loopback port."""

    def __init__(self, workdir: Path, password: str):
        self.workdir, self.password = workdir, password
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "AuthRegistry":
        import bcrypt

        self.workdir.mkdir(parents=True, exist_ok=True)
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(
            f"{REGISTRY_USER}:{bcrypt.hashpw(self.password.encode(), bcrypt.gensalt()).decode()}\n"
        )
        config = self.workdir / "registry.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")}},
                    "http": {"addr": self.address, "secret": "test-only-http-secret"},
                    "auth": {"htpasswd": {"realm": "sail-test", "path": str(htpasswd)}},
                    "log": {"level": "warn"},
                }
            )
        )
        log = self.workdir / "registry.log"
        self._proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            lambda: registry_answers(self.address),
            30,
            f"password-protected registry on {self.address}",
            log,
        )
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=30)


def write_infrastructure(project: Path, **sections: dict[str, Any]) -> None:
    """Fill the generated infrastructure.yaml's sections, as a team would."""
    path = project / "infrastructure.yaml"
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def team_project(
    tmp_path: Path, name: str, s3: S3Server, tracking_uri: str, **sections: dict[str, Any]
) -> Path:
    """A baked project whose infrastructure.yaml points at the test servers; the remote prefix is
    the project's slug, so projects sharing the bucket and the MLflow server stay apart."""
    from conftest import bake

    project = bake(tmp_path, project_name=name)
    write_infrastructure(
        project,
        aws={"endpoint_url": s3.endpoint, "region": REGION},
        dvc={"remote_url": f"s3://{BUCKET}/{project.name}"},
        mlflow={"tracking_uri": tracking_uri},
        **sections,
    )
    return project


def dvc_md5_paths(project: Path, prefix: str) -> set[str]:
    """The object keys DVC stores for the data and the accepted bundle (every file of its .dir)."""
    storage = project / ".dvc" / "cache" / "files" / "md5"
    data_md5 = yaml.safe_load((project / "data" / "raw" / "data.csv.dvc").read_text())["outs"][0][
        "md5"
    ]
    dir_md5 = yaml.safe_load((project / "models" / "accepted.dvc").read_text())["outs"][0]["md5"]
    listing = json.loads((storage / dir_md5[:2] / dir_md5[2:]).read_text())
    digests = [data_md5, dir_md5, *(entry["md5"] for entry in listing)]
    return {f"{prefix}/files/md5/{d[:2]}/{d[2:]}" for d in digests}


# ---------------------------------------------------------------------------------------------
# Fixtures (registered for every test module through tests/conftest.py's pytest_plugins)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(s3, tmp_path_factory) -> Iterator[MlflowServer]:
    """Team MLflow with proxied artifacts: clients talk HTTP only, the server writes to S3."""
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow-proxied"), s3, "mlflow", proxied=True
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_direct(s3, tmp_path_factory) -> Iterator[MlflowServer]:
    """Team MLflow without artifact proxying: clients write artifacts to S3 themselves."""
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow-direct"), s3, "mlflow-direct", proxied=False
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_registry() -> str:
    ensure_machine(
        f"the local image registry on {LOCAL_REGISTRY}", lambda: registry_answers(LOCAL_REGISTRY)
    )
    return LOCAL_REGISTRY


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    ensure_machine("the Docker daemon", docker_answers)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory, docker_daemon) -> Iterator[AuthRegistry]:
    ensure_machine("docker-registry", lambda: shutil.which("docker-registry") is not None)
    registry = AuthRegistry(
        tmp_path_factory.mktemp("auth-registry"), password="registry-pass-5f1c2a"
    ).start()
    yield registry
    registry.stop()
