"""No credential leaks: the whole team pipeline runs with known test secrets, and every output is
searched for them (and for their base64 forms, as HTTP basic auth would carry them): the
commands' stdout/stderr, every file of the project (reports/, bundle metadata, DVC config files,
DVC cache), the git history, everything MLflow stored (params, tags, registry, downloaded
artifacts, the server's database), every object in the S3 bucket, and the project's images.
The private keys (bundle signing and audit) are searched for as their PEM text, their base64
body alone (as a one-line secret field would hold it) and their raw bytes in hex.
Failure paths that could echo a credential (a URI with user:password, a refused login) are
driven too.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import bake, ok, sail
from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import signing
from servers import REGISTRY_USER, free_port, team_project, write_infrastructure

# Group "containers" (tests/conftest.py): beside the deploy tests, after one another.
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("containers")]

MLFLOW_USER = "sail-mlflow-user"
PRIVATE_KEYS = {"SAIL_SIGNING_KEY": signing.generate(), "SAIL_AUDIT_KEY": signing.generate()}


def secrets_for(registry_password: str) -> dict[str, str]:
    return {
        "SAIL_SIGNING_KEY": PRIVATE_KEYS["SAIL_SIGNING_KEY"].text(),
        "SAIL_AUDIT_KEY": PRIVATE_KEYS["SAIL_AUDIT_KEY"].text(),
        "AWS_ACCESS_KEY_ID": "AKIASAILLEAKTEST7Q2Z",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-9c1e7b2f4a6d8e0c3b5a",
        "SAIL_REGISTRY_PASSWORD": registry_password,
        # The test MLflow server does not check them, but the client sends them with every call.
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": "mlflow-pass-3b8d1f6a0e2c",
        "GITHUB_TOKEN": "ghp_sailLeakTest0123456789abcdefABCDEF",
    }


def needles(secrets: dict[str, str]) -> dict[str, bytes]:
    """Each secret as bytes, plus the base64 forms an Authorization header would carry."""
    found = {
        name: value.encode()
        for name, value in secrets.items()
        if name != "MLFLOW_TRACKING_USERNAME"
    }
    for name, value in list(found.items()):
        found[f"base64({name})"] = base64.b64encode(value)
    found["basic(registry)"] = base64.b64encode(
        f"{REGISTRY_USER}:{secrets['SAIL_REGISTRY_PASSWORD']}".encode()
    )
    for name, key in PRIVATE_KEYS.items():
        found[f"{name} (PEM body)"] = "".join(key.text().splitlines()[1:-1]).encode()
        found[f"{name} (raw, hex)"] = key.private.private_bytes_raw().hex().encode()
    found["basic(mlflow)"] = base64.b64encode(
        f"{MLFLOW_USER}:{secrets['MLFLOW_TRACKING_PASSWORD']}".encode()
    )
    return found


def leaks(blob: bytes, where: str, secrets: dict[str, str]) -> list[str]:
    return [f"{name} in {where}" for name, needle in needles(secrets).items() if needle in blob]


def unpacked(blob: bytes) -> bytes:
    """gzip members decompressed, so a compressed layer is searched too."""
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, s3, mlflow_server, auth_registry):
    """A team project run end to end with every secret set; the output of each command kept."""
    secrets = secrets_for(auth_registry.password)
    project = team_project(
        tmp_path_factory.mktemp("secrets"),
        "Secret Model",
        s3,
        mlflow_server.uri,
        registry={"url": auth_registry.address, "username": REGISTRY_USER},
    )
    env = {name: value for name, value in secrets.items() if name != "SAIL_SIGNING_KEY"}
    key = secrets["SAIL_SIGNING_KEY"]
    outputs = {
        "doctor": ok(sail(project, "doctor", key=key, **env)),
        "run": ok(sail(project, "run", key=key, **env)),
        # seals the audit record with SAIL_AUDIT_KEY
        "promote": ok(sail(project, "promote", key=key, **env)),
        # re-scores the champion: downloads its bundle
        "gate": ok(sail(project, "gate", key=key, **env)),
        "report": sail(project, "report", key=key, **env),
        # Failures print what went wrong; they must not print what was used to try.
        "push-down": sail(
            project,
            "push",
            key=key,
            **env,
            SAIL_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
            SAIL_RETRY_ATTEMPTS="1",
            AWS_MAX_ATTEMPTS="1",
        ),
        "doctor-bad-login": sail(
            project,
            "doctor",
            key=key,
            **{**env, "SAIL_REGISTRY_PASSWORD": secrets["SAIL_REGISTRY_PASSWORD"] + "-wrong"},
        ),
    }
    assert outputs["push-down"].returncode == 1 and outputs["doctor-bad-login"].returncode == 1
    return {"project": project, "secrets": secrets, "env": env, "key": key, "outputs": outputs}


def test_no_secret_in_command_output(secret_run):
    found = []
    for command, result in secret_run["outputs"].items():
        found += leaks(
            (result.stdout + result.stderr).encode(),
            f"`sail {command}` output",
            secret_run["secrets"],
        )
    wrong = secret_run["secrets"]["SAIL_REGISTRY_PASSWORD"] + "-wrong"
    bad_login = secret_run["outputs"]["doctor-bad-login"]
    assert wrong not in bad_login.stdout + bad_login.stderr and "refused" in bad_login.stdout
    assert found == []


def test_no_secret_in_the_project_or_its_history(secret_run):
    project: Path = secret_run["project"]
    found = []
    files = [
        p for p in project.rglob("*") if p.is_file() and ".git" not in p.relative_to(project).parts
    ]
    assert {
        project / ".dvc" / "config",
        project / ".dvc" / "config.local",
        project / "reports" / "gate.json",
        project / "models" / "accepted" / "metadata.json",
    } <= set(files)
    for path in files:
        found += leaks(path.read_bytes(), str(path.relative_to(project)), secret_run["secrets"])
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=project, capture_output=True).stdout
    found += leaks(history, "git history", secret_run["secrets"])
    assert found == []


def test_no_secret_in_mlflow(secret_run, mlflow_server, tmp_path):
    client = mlflow_server.client()
    found = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            recorded = repr((run.data.params, run.data.tags, run.data.metrics, run.info)).encode()
            found += leaks(recorded, f"run {run.info.run_id} params/tags", secret_run["secrets"])
            target = tmp_path / run.info.run_id
            client.download_artifacts(run.info.run_id, "", str(target))
            for artifact in (p for p in target.rglob("*") if p.is_file()):
                found += leaks(
                    artifact.read_bytes(),
                    f"artifact {artifact.relative_to(tmp_path)}",
                    secret_run["secrets"],
                )
    for model in client.search_registered_models():
        found += leaks(
            repr(model).encode(), f"registered model {model.name}", secret_run["secrets"]
        )
        for version in client.search_model_versions(f"name='{model.name}'"):
            found += leaks(
                repr(version).encode(), f"{model.name} v{version.version}", secret_run["secrets"]
            )
    found += leaks(
        mlflow_server.db.read_bytes(), "the MLflow server's database", secret_run["secrets"]
    )
    found += leaks(mlflow_server.log.read_bytes(), "the MLflow server's log", secret_run["secrets"])
    assert found == []


def test_no_secret_in_the_bucket(secret_run, s3):
    found = []
    for key in s3.keys():
        found += leaks(s3.read(key), f"s3://{key}", secret_run["secrets"])
    # the project's data and bundle are there to search
    assert s3.keys(prefix=f"{secret_run['project'].name}/")
    assert found == []


@pytest.mark.timeout(2400)  # above build + package (1500 s), and secret_run when first
def test_no_secret_in_the_images(secret_run, base_image):
    """`docker save` of every image the project built: the layers, their history and config."""
    project = secret_run["project"]
    env = {**secret_run["env"], "SAIL_BASE_IMAGE": base_image}
    ok(sail(project, "build", key=secret_run["key"], **env, timeout=900))
    ok(sail(project, "package", key=secret_run["key"], **env, timeout=600))
    images = json.loads((project / ".sail" / "images.json").read_text())
    refs = [ref for side, ref in images.items() if side in ("train", "metric")]
    refs.append(json.loads((project / "reports" / "package.json").read_text())["image"])
    found = []
    for ref in refs:
        saved = subprocess.run(["docker", "save", ref], capture_output=True, check=True).stdout
        found += leaks(saved, f"docker save {ref}", secret_run["secrets"])
        with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    blob = archive.extractfile(member).read()
                    if blob[:2] == b"\x1f\x8b":
                        found += leaks(
                            unpacked(blob),
                            f"{ref}:{member.name} (gunzipped)",
                            secret_run["secrets"],
                        )
    assert len(refs) == 3 and found == []


# --- failure paths that could echo a credential -------------------------------------------------


def test_a_tracking_uri_with_a_password_is_redacted_in_every_message(tmp_path):
    project = bake(tmp_path, project_name="Redacted Model")
    closed = free_port()
    uri = f"http://ci-user:uri-secret-5e7a@127.0.0.1:{closed}"
    promoted = sail(
        project, "promote", MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"
    )
    assert (
        promoted.returncode == 1
        and f"MLflow at http://***@127.0.0.1:{closed} failed while" in promoted.stderr
    )
    doctor = sail(project, "doctor", MLFLOW_TRACKING_URI=uri)
    assert doctor.returncode == 1 and f"http://***@127.0.0.1:{closed}: unreachable" in doctor.stdout
    for result in (promoted, doctor):
        assert "uri-secret-5e7a" not in result.stdout + result.stderr
    # In the committed file a password is refused outright, without repeating it.
    write_infrastructure(project, mlflow={"tracking_uri": uri})
    refused = sail(project, "doctor")
    assert refused.returncode == 1 and "uri-secret-5e7a" not in refused.stdout + refused.stderr
    assert (
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
        in refused.stderr
    )


@pytest.mark.parametrize(
    "env",
    [
        {"SAIL_DVC_REMOTE_URL": "s3://AKIAEXAMPLE:url-secret-91@team-data/x"},
        {"SAIL_REGISTRY": "ci:url-secret-91@registry.example.com"},
        {"SAIL_S3_ENDPOINT_URL": "http://minio:url-secret-91@127.0.0.1:9000"},
    ],
)
def test_credentials_inside_urls_are_refused_without_repeating_them(tmp_path, env):
    with pytest.raises(SailError) as refused:
        Settings.from_env(ProjectPaths(tmp_path), env)
    assert "url-secret-91" not in str(refused.value) and "***@" in str(refused.value)


def test_settings_never_show_their_secrets(tmp_path):
    settings = Settings.from_env(
        ProjectPaths(tmp_path),
        {
            "SAIL_SIGNING_KEY": "repr-secret-key",
            "SAIL_REGISTRY_PASSWORD": "repr-secret-pw",
            "SAIL_AUDIT_KEY": "repr-secret-audit",
            "MLFLOW_TRACKING_URI": "https://ci:repr-secret-uri@mlflow.example.com",
        },
    )
    shown = repr(settings) + str(settings)
    assert "repr-secret" not in shown and "https://***@mlflow.example.com" in shown
    assert (
        settings.signing_key == b"repr-secret-key"
        and settings.registry_password == "repr-secret-pw"
    )
    assert settings.audit_key == "repr-secret-audit"
    for key in PRIVATE_KEYS.values():  # a key object shows its id, never the key
        assert key.key_id in repr(key) and "PRIVATE" not in repr(key) + repr(key.verify_key)


def test_keygen_writes_the_private_key_only_to_its_file(tmp_path):
    result = ok(sail(tmp_path, "keygen", str(tmp_path / "keys"), key=None))
    private = (tmp_path / "keys" / "signing.key").read_text()
    body = "".join(private.splitlines()[1:-1])
    assert (
        body not in result.stdout + result.stderr
        and "PRIVATE KEY" not in result.stdout + result.stderr
    )
    assert (
        tmp_path / "keys" / "signing.key"
    ).stat().st_mode & 0o077 == 0  # readable by its owner only
    again = sail(tmp_path, "keygen", str(tmp_path / "keys"), key=None)
    assert again.returncode == 1 and "refusing to overwrite a key" in again.stderr
    assert (tmp_path / "keys" / "signing.key").read_text() == private
