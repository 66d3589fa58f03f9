"""Trust and supply chain: who holds which key, and what each refuses.

- Bundles: the HMAC scheme end to end, the development pair behind its opt-in, wrong keys named.
- Serving: a `sail serve` started by the smoke test gets the public key and no private key.
- Images: `sail publish`'s signature in the local registry (127.0.0.1:5000) is checked by
  `sail deploy` and `sail promote`: unsigned, re-tagged and foreign-key images are refused; a
  signature altered on its way from the registry (an HTTP proxy in the middle) is refused too.
- A bundle whose metadata.json alone was edited is refused.
- Audit: the audit chain has its own key pair; a serving or bundle key cannot append to it.
- Image references parsed the way Docker parses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
import yaml
from mlflow import MlflowClient

from conftest import TEST_AUDIT_KEY, TEST_KEY, TEST_VERIFY_KEY, bake, ok, sail
from sail_pipelines.clients import kubernetes
from sail_pipelines.clients.images import ImageRef
from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.delivery import audit, kube_workload
from sail_pipelines.inference.smoke import free_port, local_server
from sail_pipelines.integrity import imagesign, signing
from sail_pipelines.integrity.bundle import BundleRejected, load_bundle
from servers import QuietHandler, serving
from test_deploy import (  # noqa: F401 - docker_client is a fixture
    REGISTRY,
    Stubs,
    docker_client,
    first_error_line,
    publish_signed,
    register_version,
    remove_containers,
)

pytestmark = pytest.mark.docker

MODEL = "trust_check"
REPO = "trust-check/inference"


def last_error(result, command: str) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"sail {command}: error: "), result.stderr
    return line


# --- bundle keys ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_project(tmp_path_factory) -> Path:
    project = bake(tmp_path_factory.mktemp("trust"), project_name="Trust Check")
    ok(sail(project, "validate"))
    ok(sail(project, "split"))
    return project


def candidate_bundle(project: Path) -> Path:
    return project / "models" / "candidates" / "logistic_regression"


def predict(project: Path, **env) -> subprocess.CompletedProcess:
    return sail(
        project,
        "predict",
        "--bundle",
        str(candidate_bundle(project)),
        "--input",
        str(project / "data" / "split" / "test.csv"),
        "--output",
        str(project / "out.csv"),
        key=None,
        **env,
    )


def test_keygen_writes_a_pair_whose_key_id_is_the_public_fingerprint(tmp_path):
    out = json.loads(ok(sail(tmp_path, "keygen", str(tmp_path / "k"), key=None)).stdout)
    public = signing.public_key((tmp_path / "k" / "verify.key").read_text(), "verify.key")
    private = signing.private_key((tmp_path / "k" / "signing.key").read_text(), "signing.key")
    assert out["key_id"] == public.key_id == private.key_id and len(out["key_id"]) == 16
    # A key pasted into a one-line secret field (line breaks lost) still reads.
    one_line = " ".join((tmp_path / "k" / "signing.key").read_text().split())
    assert signing.private_key(one_line, "pasted").key_id == out["key_id"]


def test_an_hmac_secret_is_refused_where_ed25519_is_expected(split_project):
    line = last_error(sail(split_project, "train", key="an-old-hmac-secret"), "train")
    assert (
        "SAIL_SIGNING_KEY is not an Ed25519 private key: create a pair with `sail keygen DIR`"
        in line
    )
    line = last_error(sail(split_project, "serve", key=None, SAIL_VERIFY_KEY="not a key"), "serve")
    assert "SAIL_VERIFY_KEY is not an Ed25519 public key" in line


def test_the_hmac_scheme_chosen_in_params(split_project, tmp_path):
    project = tmp_path / "hmac"
    shutil.copytree(split_project, project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["signing"] = {"scheme": "hmac-sha256"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    secret = "team-hmac-secret-51c0e9"
    ok(sail(project, "train", "--candidate", "logistic_regression", key=secret))
    signature = json.loads((candidate_bundle(project) / "SIGNATURE.json").read_text())
    assert signature["algorithm"] == "HMAC-SHA256"
    assert (
        json.loads((candidate_bundle(project) / "metadata.json").read_text())["signing"][
            "algorithm"
        ]
        == "HMAC-SHA256"
    )
    ok(predict(project, SAIL_VERIFY_KEY=secret))  # HMAC verifiers hold the shared secret
    line = last_error(predict(project, SAIL_VERIFY_KEY="another-secret"), "predict")
    assert (
        f"signed with HMAC-SHA256 key id {signature['key_id']}, this key is HMAC-SHA256 key id"
        in line
    )
    line = last_error(sail(project, "train", key=TEST_KEY), "train")
    assert "SAIL_SIGNING_KEY is a PEM key, but params.yaml signs with hmac-sha256" in line
    bad = dict(params, signing={"scheme": "rot13"})
    (project / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    assert "signing.scheme = 'rot13' is not allowed; use 'ed25519' or 'hmac-sha256'" in last_error(
        sail(project, "train"), "train"
    )


def test_the_development_pair_only_behind_its_opt_in(split_project, tmp_path):
    project = tmp_path / "dev"
    shutil.copytree(split_project, project, symlinks=True)
    trained = sail(
        project, "train", "--candidate", "logistic_regression", key=None, SAIL_ALLOW_DEV_KEY="1"
    )
    ok(trained)
    assert (
        "warning: signing with the public development key (SAIL_ALLOW_DEV_KEY=1)" in trained.stderr
    )
    metadata = json.loads((candidate_bundle(project) / "metadata.json").read_text())
    assert metadata["signing"] == {
        "algorithm": "Ed25519",
        "key_id": signing.dev_pair().key_id,
        "dev_key": True,
    }
    ok(predict(project, SAIL_ALLOW_DEV_KEY="1"))
    # no opt-in, no key
    assert "SAIL_VERIFY_KEY is not set" in last_error(predict(project), "predict")
    # a real key refuses it
    line = last_error(predict(project, SAIL_VERIFY_KEY=TEST_VERIFY_KEY), "predict")
    assert f"signed with Ed25519 key id {signing.dev_pair().key_id}" in line


def test_the_serving_process_sees_the_public_key_and_no_private_key(pipeline_project, monkeypatch):
    """The smoke test's `sail serve`, started by a process that holds every private key."""
    monkeypatch.setenv("SAIL_SIGNING_KEY", TEST_KEY)
    monkeypatch.setenv("SAIL_AUDIT_KEY", TEST_AUDIT_KEY)
    accepted = pipeline_project / "models" / "accepted"
    with local_server(accepted, signing.public_key(TEST_VERIFY_KEY, "test")) as url:
        assert (
            requests.get(f"{url}/metadata", timeout=10).json()["signing"]["key_id"]
            == signing.public_key(TEST_VERIFY_KEY, "test").key_id
        )
        servers = [
            pid for pid in os.listdir("/proc") if pid.isdigit() and _serves(pid, str(accepted))
        ]
        assert servers
        for pid in servers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"SAIL_VERIFY_KEY={TEST_VERIFY_KEY}".encode() in environ
            assert not any(
                e.startswith((b"SAIL_SIGNING_KEY=", b"SAIL_AUDIT_KEY=")) or b"PRIVATE KEY" in e
                for e in environ
            )


def _serves(pid: str, bundle: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline and bundle.encode() in cmdline


def test_kubernetes_pods_get_the_public_key_or_the_hmac_secret_from_a_secret():
    def env_of(workload):
        pod = kube_workload.deployment(workload)["spec"]["template"]["spec"]
        return pod["containers"][0]["env"]

    public = env_of(kubernetes.Workload("m", "staging", "r@sha256:0", verify_key=TEST_VERIFY_KEY))
    assert {
        "name": "SAIL_VERIFY_KEY",
        "value": TEST_VERIFY_KEY,
    } in public and "SAIL_SIGNING_KEY" not in json.dumps(public)
    hmac = env_of(kubernetes.Workload("m", "staging", "r@sha256:0"))
    assert {
        "name": "SAIL_VERIFY_KEY",
        "valueFrom": {"secretKeyRef": {"name": "m-signing-key", "key": "signing-key"}},
    } in hmac


# --- image references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, repository, tag, digest, registry",
    [
        ("repo@sha256:abcd", "repo", None, "sha256:abcd", "docker.io"),
        (
            "127.0.0.1:5000/m/inference:c0de-v1",
            "127.0.0.1:5000/m/inference",
            "c0de-v1",
            None,
            "127.0.0.1:5000",
        ),
        ("127.0.0.1:5000/m/inference", "127.0.0.1:5000/m/inference", None, None, "127.0.0.1:5000"),
        (
            "localhost:5000/m/i:prod@sha256:ff",
            "localhost:5000/m/i",
            "prod",
            "sha256:ff",
            "localhost:5000",
        ),
        ("m/inference:staging", "m/inference", "staging", None, "docker.io"),
    ],
)
def test_image_references_parse_as_docker_parses_them(ref, repository, tag, digest, registry):
    parsed = ImageRef.parse(ref)
    assert (parsed.repository, parsed.tag, parsed.digest, parsed.registry) == (
        repository,
        tag,
        digest,
        registry,
    )
    assert str(parsed) == ref and parsed.version == (digest or tag or "latest")


# --- signed images ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stubs(docker_client, base_image):
    made = Stubs(docker_client, base_image)
    yield made
    remove_containers(docker_client, MODEL)
    made.remove_all()


@pytest.fixture
def image_project(tmp_path, stubs, docker_client):
    root = bake(tmp_path, project_name="Trust Check")
    (root / "reports").mkdir(exist_ok=True)
    yield root
    remove_containers(docker_client, MODEL, root)


def staged(project: Path, ref: str) -> None:
    (project / "reports" / "package.json").write_text(
        json.dumps({"image": ref, "version": "1", "model": MODEL})
    )


def deploy(project: Path, **env):
    return sail(
        project,
        "deploy",
        "--environment",
        "staging",
        "--port",
        str(free_port()),
        "--timeout",
        "30",
        SAIL_REGISTRY=REGISTRY,
        **env,
    )


def manifest(path: str, reference: str) -> requests.Response:
    return requests.get(
        f"http://{REGISTRY}/v2/{path}/manifests/{reference}",
        timeout=10,
        headers={"Accept": imagesign.MANIFEST_TYPE},
    )


def test_deploy_runs_only_images_signed_with_the_project_key(image_project, stubs, docker_client):
    tag = f"t{free_port()}"  # a fresh tag per run: the registry outlives the test
    ref = f"{REGISTRY}/{REPO}:{tag}"
    stubs.build(ref)
    signed_digest = publish_signed(docker_client, ref)
    staged(image_project, ref)
    out = json.loads(ok(deploy(image_project, key=None, SAIL_VERIFY_KEY=TEST_VERIFY_KEY)).stdout)
    assert out["signature"]["digest"] == signed_digest and out["image"] == ref
    serving = [
        c.id
        for c in docker_client.containers.list(all=True, filters={"label": f"sail.model={MODEL}"})
    ]
    stored = manifest(REPO, imagesign.signature_tag(signed_digest)).json()["layers"][0]
    assert (
        stored["mediaType"] == imagesign.PAYLOAD_TYPE
        and imagesign.SIGNATURE in stored["annotations"]
    )

    # Unsigned: another image pushed under its own tag, never published by sail.
    unsigned = f"{REGISTRY}/{REPO}:{tag}-unsigned"
    stubs.build(unsigned, mode="never")
    for line in docker_client.api.push(
        f"{REGISTRY}/{REPO}", tag=f"{tag}-unsigned", stream=True, decode=True
    ):
        assert "error" not in line
    staged(image_project, unsigned)
    assert (
        f"{unsigned} (" in (line := last_error(deploy(image_project), "deploy"))
        and "is not signed" in line
    )

    # Re-tagged: the signed tag now points at the unsigned image...
    docker_client.images.get(unsigned).tag(f"{REGISTRY}/{REPO}", tag)
    for line in docker_client.api.push(f"{REGISTRY}/{REPO}", tag=tag, stream=True, decode=True):
        assert "error" not in line
    staged(image_project, ref)
    assert "is not signed" in last_error(deploy(image_project), "deploy")
    # ...and copying the good signature over to it does not help: it names the other digest.
    other_digest = docker_client.images.get_registry_data(ref).id
    copied = manifest(REPO, imagesign.signature_tag(signed_digest))
    put = requests.put(
        f"http://{REGISTRY}/v2/{REPO}/manifests/{imagesign.signature_tag(other_digest)}",
        data=copied.content,
        headers={"Content-Type": imagesign.MANIFEST_TYPE},
        timeout=10,
    )
    assert put.status_code == 201
    line = last_error(deploy(image_project), "deploy")
    assert f"but its signature is for {signed_digest}" in line and "a re-tagged image" in line

    # Signed by another key pair.
    other = signing.generate()
    foreign = f"{REGISTRY}/{REPO}:{tag}-foreign"
    stubs.build(foreign)
    publish_signed(docker_client, foreign, key=other.text())
    staged(image_project, foreign)
    line = last_error(deploy(image_project), "deploy")
    expected = signing.public_key(TEST_VERIFY_KEY, "t").key_id
    assert (
        f"signed with Ed25519 key id {other.key_id}, this key is Ed25519 key id {expected}" in line
    )
    # None of the refused images ran: the signed one deployed first is still the one serving.
    assert [
        c.id
        for c in docker_client.containers.list(all=True, filters={"label": f"sail.model={MODEL}"})
    ] == serving


def test_promote_refuses_an_unsigned_image_and_changes_nothing(image_project, stubs, docker_client):
    tag = f"p{free_port()}"
    ref = f"{REGISTRY}/{REPO}:{tag}"
    stubs.build(ref, model=MODEL, version="1", bundle_id="bundle-v1")
    for line in docker_client.api.push(f"{REGISTRY}/{REPO}", tag=tag, stream=True, decode=True):
        assert "error" not in line
    version = register_version(image_project, MODEL, ref)
    line = last_error(
        sail(image_project, "promote", "--version", version, SAIL_REGISTRY=REGISTRY), "promote"
    )
    assert "is not signed" in line and "nothing was changed" in line
    client = _mlflow(image_project)
    assert "champion" not in client.get_registered_model(MODEL).aliases
    publish_signed(docker_client, ref)
    promoted = json.loads(
        ok(sail(image_project, "promote", "--version", version, SAIL_REGISTRY=REGISTRY)).stdout
    )
    assert promoted["to"] == version and promoted["audit"]["pushed"] is True


# --- the audit key ----------------------------------------------------------------------------


def _mlflow(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def test_a_serving_or_bundle_credential_cannot_append_a_valid_audit_record(tmp_path):
    project = bake(tmp_path, project_name="Trust Check")
    v1 = register_version(project, MODEL, None)
    ok(sail(project, "promote", "--version", v1, "--approver", "alice"))
    v2 = register_version(project, MODEL, None)
    # A host with the serving credential (the public key) cannot promote at all...
    line = last_error(
        sail(project, "promote", "--version", v2, key=None, SAIL_VERIFY_KEY=TEST_VERIFY_KEY),
        "promote",
    )
    assert "SAIL_AUDIT_KEY is not set" in line
    # ...and a record it forges, with the bundle signing key, is refused by everyone after it.
    client = _mlflow(project)
    records = audit.history(client, MODEL, signing.private_key(TEST_AUDIT_KEY, "audit").verify_key)
    forged = {"action": "promote", "from": v1, "to": v2, "approver": "mallory", "at": audit.now()}
    audit.append(
        client,
        ProjectPaths(project),
        MODEL,
        signing.private_key(TEST_KEY, "bundle key"),
        records,
        forged,
    )
    client.set_registered_model_alias(MODEL, "champion", v2)
    line = last_error(sail(project, "rollback"), "rollback")
    assert "audit record sail.audit.000002 of trust_check was signed with key id" in line
    assert f"not this audit key's {signing.private_key(TEST_AUDIT_KEY, 'a').key_id}" in line
    # Claiming the audit key's id does not help: the signature does not check out.
    tags = client.get_registered_model(MODEL).tags
    record = json.loads(tags["sail.audit.000002"])
    record["key_id"] = signing.private_key(TEST_AUDIT_KEY, "a").key_id
    client.set_registered_model_tag(MODEL, "sail.audit.000002", json.dumps(record))
    assert "does not match its signature" in last_error(sail(project, "rollback"), "rollback")
    # A mismatched pair is caught before anything is written.
    line = last_error(sail(project, "promote", SAIL_AUDIT_VERIFY_KEY=TEST_VERIFY_KEY), "promote")
    assert (
        "SAIL_AUDIT_KEY (key id" in line
        and "is not the private half of SAIL_AUDIT_VERIFY_KEY" in line
    )


# --- a signature altered between the registry and the check ------------------------------------

Tamper = Callable[[str, bytes], bytes]  # (URL, body) -> the body the client gets
SIGNED_REPO = "trust-check/imagesign"


@contextlib.contextmanager
def tampering_proxy(tamper: Tamper) -> Iterator[str]:
    """An HTTP proxy (HTTP_PROXY) that passes registry reads through, altering each body with
    `tamper`: what a registry or network in the middle could hand the verifier."""
    upstream = requests.Session()
    upstream.trust_env = False  # not through itself

    class Handler(QuietHandler):
        def do_GET(self):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
            answer = upstream.get(self.path, headers=headers, timeout=10, allow_redirects=False)
            body = (
                tamper(self.path, answer.content) if answer.status_code == 200 else answer.content
            )
            kept = ("Content-Type", "Www-Authenticate", "Location")
            self.reply(
                answer.status_code,
                {name: answer.headers[name] for name in kept if name in answer.headers},
                body,
            )

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


def _manifest(change: Callable[[dict], None]) -> Tamper:
    def tamper(url: str, body: bytes) -> bytes:
        if "/manifests/" not in url:
            return body
        manifest = json.loads(body)
        change(manifest)
        return json.dumps(manifest).encode()

    return tamper


def _payload(replace: Callable[[bytes], bytes]) -> Tamper:
    return lambda url, body: replace(body) if "/blobs/" in url else body


def _not_base64(manifest: dict) -> None:
    manifest["layers"][0]["annotations"][imagesign.SIGNATURE] = "not base64!"


def _two_layers(manifest: dict) -> None:
    manifest["layers"] *= 2


def _for_another_image(body: bytes) -> bytes:
    """A well-formed payload naming another image: not the bytes the manifest's digest names."""
    return imagesign.payload(f"{REGISTRY}/{SIGNED_REPO}", "sha256:" + "0" * 64)


@pytest.fixture(scope="module")
def signed_digest(local_registry) -> str:
    """A digest `sail publish` signed in the local registry (no image needed: the signature is
    stored under the digest's own tag)."""
    digest = "sha256:" + hashlib.sha256(f"imagesign {free_port()}".encode()).hexdigest()
    settings = Settings.from_env(ProjectPaths(Path("/nonexistent")), {"SAIL_REGISTRY": REGISTRY})
    imagesign.sign(
        settings, f"{REGISTRY}/{SIGNED_REPO}:x", digest, signing.private_key(TEST_KEY, "k")
    )
    return digest


@pytest.mark.parametrize(
    "tamper, refusal",
    [
        (lambda url, body: body, None),  # passed through: the proxy alone changes nothing
        (_payload(_for_another_image), "the signature payload of {ref} does not match its digest"),
        (
            _payload(lambda body: b"\xff" + body),
            "the signature stored for {ref} ({digest}) is unreadable",
        ),
        (_manifest(_not_base64), "the signature stored for {ref} ({digest}) is unreadable"),
        (_manifest(_two_layers), "the signature stored for {ref} ({digest}) is unreadable"),
    ],
    ids=["untouched", "payload-digest-mismatch", "payload-not-json", "not-base64", "two-layers"],
)
def test_a_signature_altered_on_its_way_is_refused(signed_digest, monkeypatch, tamper, refusal):
    ref = f"{REGISTRY}/{SIGNED_REPO}@{signed_digest}"
    settings = Settings.from_env(ProjectPaths(Path("/nonexistent")), {"SAIL_REGISTRY": REGISTRY})
    key = signing.public_key(TEST_VERIFY_KEY, "k")
    with tampering_proxy(tamper) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("http_proxy", proxy)
        if refusal is None:
            assert imagesign.verify(None, settings, ref, key) == signed_digest
        else:
            with pytest.raises(imagesign.ImageRejected) as refused:
                imagesign.verify(None, settings, ref, key)
            assert str(refused.value) == refusal.format(ref=ref, digest=signed_digest) + (
                "; refusing it"
            )


# --- metadata.json edited on its own -------------------------------------------------------------


def _edit_metadata(bundle: Path, change: str) -> None:
    path = bundle / "metadata.json"
    metadata = json.loads(path.read_text())
    if change == "refusal switched off":
        metadata["serving"]["out_of_range"] = "ignore"
    elif change == "another version":
        metadata["registry"]["version"] = "99"
    path.write_text(json.dumps(metadata, indent=None if change == "reformatted" else 2))


@pytest.mark.parametrize("change", ["refusal switched off", "another version", "reformatted"])
def test_a_bundle_whose_metadata_alone_was_edited_is_refused(pipeline_project, tmp_path, change):
    bundle = tmp_path / "accepted"
    shutil.copytree(pipeline_project / "models" / "accepted", bundle)
    key = signing.public_key(TEST_VERIFY_KEY, "k")
    load_bundle(bundle, key)  # the copy verifies
    _edit_metadata(bundle, change)
    with pytest.raises(BundleRejected, match="metadata.json does not match its signed hash"):
        load_bundle(bundle, key)
    if change == "refusal switched off":  # and a server is never started on it
        served = sail(pipeline_project, "serve", "--bundle", str(bundle), "--port", "1")
        assert "metadata.json does not match its signed hash" in last_error(served, "serve")
