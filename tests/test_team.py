"""Team mode: infrastructure.yaml (overridable by the environment) points a project at shared
S3, an MLflow tracking server and an image registry; `sail doctor` checks each of them.

Everything runs against real servers on 127.0.0.1 (tests/servers.py): moto as S3/STS/ECR, a
real `mlflow server` with its artifacts in the moto bucket, the local registry, and a
password-protected registry.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import re
import subprocess
import tarfile
import time

import pytest
import requests
import yaml

from conftest import bake, dvc, ok, sail
from sail_pipelines.config import TEAM_FILE, TEAM_KEYS, ProjectPaths, Settings, load_team_file
from sail_pipelines.errors import SailError
from servers import (
    BUCKET,
    CLIENT_AWS,
    REGION,
    REGISTRY_USER,
    FaultProxy,
    dvc_md5_paths,
    free_port,
    team_project,
    write_infrastructure,
)

# Group "containers" (tests/conftest.py): beside the deploy tests, after one another.
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("containers")]

ROLE = "arn:aws:iam::123456789012:role/sail-pipeline"


def doctor_lines(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """{service: (status, detail)} from `sail doctor`'s one line per service."""
    lines = {}
    for line in result.stdout.splitlines():
        status, service, detail = re.match(r"^(\S+)\s+(signing key|\S+)\s+(.*)$", line).groups()
        lines[service] = (status, detail)
    return lines


# --- the configuration file ------------------------------------------------------------------


def test_generated_file_is_embedded_mode_and_documents_every_variable(tmp_path):
    project = bake(tmp_path)
    text = (project / TEAM_FILE).read_text()
    values = load_team_file(project / TEAM_FILE)
    assert set(values) == {"retry.attempts", "retry.backoff_seconds"}  # every service empty
    settings = Settings.from_env(ProjectPaths(project), {})
    assert (
        not settings.team_mode
        and settings.tracking_uri.startswith("sqlite:///")
        and settings.dvc_remote_url is None
    )
    assert settings.registry is None and not settings.aws.configured
    for key, names in TEAM_KEYS.items():
        section, leaf = key.split(".")
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{leaf}:"))
        assert all(name in line for name in names), f"{key}: {line}"
    for secret in (
        "SAIL_SIGNING_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "SAIL_REGISTRY_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        assert secret in text


BAD_FILES = [
    (
        "mlfow:\n  tracking_uri: http://x\n",
        "infrastructure.yaml: mlfow is not a known key; use one of aws, dvc, mlflow, registry, "
        "retry (or remove it)",
    ),
    (
        "mlflow:\n  tracking_url: http://x\n",
        "infrastructure.yaml: mlflow.tracking_url is not a known key; use one of tracking_uri",
    ),
    ("aws:\n  region: 5\n", "aws.region must be a string, got int 5"),
    ("dvc:\n  remote_url: s3://\n", "dvc.remote_url: an s3:// url needs a bucket"),
    ("dvc:\n  remote_url: s3:///path\n", "dvc.remote_url: an s3:// url needs a bucket"),
    (
        "dvc:\n  remote_url: gs://bucket/x\n",
        "a DVC remote must be s3://bucket/path or a local folder",
    ),
    ("dvc:\n  remote_url: s3://Bad_Bucket/x\n", "'Bad_Bucket' is not a valid S3 bucket name"),
    (
        "aws:\n  endpoint_url: 127.0.0.1:9000\n",
        "the S3 endpoint must be an http(s)://host[:port] URL",
    ),
    ("aws:\n  role_arn: sail-role\n", "not an IAM role ARN"),
    ("mlflow:\n  tracking_uri: http://\n", "an http(s) tracking URI needs a host"),
    ("registry:\n  url: https://127.0.0.1:5000\n", "write the registry without a scheme"),
    ("registry:\n  url: Registry.Example.com/ML\n", "lowercase namespace"),
    (
        "registry:\n  password: hunter2\n",
        "infrastructure.yaml: registry.password is a secret and never goes in this committed "
        "file; set SAIL_REGISTRY_PASSWORD in the environment",
    ),
    ("aws:\n  secret_access_key: abc\n", "set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"),
    ("retry:\n  attempts: 0\n", "retry.attempts must be a whole number from 1 to 20, got 0"),
    ("retry:\n  backoff_seconds: soon\n", "retry.backoff_seconds must be a number of seconds"),
    ("dvc: s3://bucket\n", "dvc must be a mapping of keys (remote_url), got 's3://bucket'"),
    ("- aws\n", "expected a mapping of sections"),
    ("aws:\n  region: [eu\n", "infrastructure.yaml is not valid YAML: line 3"),
]


@pytest.mark.parametrize("content,message", BAD_FILES, ids=[m[:40] for _, m in BAD_FILES])
def test_bad_values_in_the_file_are_refused_naming_the_key(tmp_path, content, message):
    (tmp_path / TEAM_FILE).write_text(content)
    with pytest.raises(SailError, match=re.escape(message)):
        Settings.from_env(ProjectPaths(tmp_path), {})


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SAIL_DVC_REMOTE_URL": "s3://"}, "SAIL_DVC_REMOTE_URL: an s3:// url needs a bucket"),
        (
            {"SAIL_REGISTRY": "http://127.0.0.1:5000"},
            "SAIL_REGISTRY: write the registry without a scheme",
        ),
        ({"SAIL_RETRY_ATTEMPTS": "many"}, "SAIL_RETRY_ATTEMPTS must be a whole number"),
        ({"SAIL_AWS_ROLE_ARN": "admin"}, "SAIL_AWS_ROLE_ARN: not an IAM role ARN"),
        (
            {"SAIL_S3_ENDPOINT_URL": "minio:9000"},
            "SAIL_S3_ENDPOINT_URL: the S3 endpoint must be an http(s)://host[:port] URL",
        ),
    ],
)
def test_bad_values_in_the_environment_name_the_variable(tmp_path, env, message):
    with pytest.raises(SailError, match=re.escape(message)):
        Settings.from_env(ProjectPaths(tmp_path), env)


def test_a_bad_file_stops_any_command_with_one_line(tmp_path):
    project = bake(tmp_path)
    write_infrastructure(project, dvc={"remote_url": "s3://"})
    for command in ("doctor", "validate", "push"):
        result = sail(project, command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert lines == [
            f"sail {command}: error: infrastructure.yaml: dvc.remote_url: an s3:// url needs a "
            "bucket: s3://bucket/path, got 's3://'"
        ]


def test_the_environment_overrides_the_file(tmp_path):
    (tmp_path / TEAM_FILE).write_text(
        yaml.safe_dump(
            {
                "aws": {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000/"},
                "dvc": {"remote_url": "s3://team-data/models"},
                "mlflow": {"tracking_uri": "https://mlflow.example.com/"},
                "registry": {"url": "registry.example.com/ml", "username": "ci"},
                "retry": {"attempts": 3, "backoff_seconds": 0.5},
            }
        )
    )
    paths = ProjectPaths(tmp_path)
    from_file = Settings.from_env(paths, {})
    assert (
        from_file.tracking_uri == "https://mlflow.example.com"
        and from_file.artifact_location is None
    )
    assert from_file.aws.endpoint_url == "http://127.0.0.1:9000" and from_file.retry.attempts == 3
    assert from_file.registry == "registry.example.com/ml" and from_file.team_mode
    env = {
        "AWS_REGION": "us-east-2",
        "SAIL_DVC_REMOTE_URL": "s3://other/x",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5001",
        "SAIL_REGISTRY": "127.0.0.1:5000",
        "SAIL_RETRY_ATTEMPTS": "1",
        "SAIL_REGISTRY_PASSWORD": "pw",
    }
    overridden = Settings.from_env(paths, env)
    assert (
        overridden.aws.region,
        overridden.dvc_remote_url,
        overridden.tracking_uri,
        overridden.registry,
        overridden.retry.attempts,
    ) == ("us-east-2", "s3://other/x", "http://127.0.0.1:5001", "127.0.0.1:5000", 1)
    origins = dict(overridden.origins)
    assert origins["aws.region"] == "AWS_REGION" and origins["aws.endpoint_url"] == TEAM_FILE
    assert overridden.registry_password == "pw" and "pw" not in repr(overridden)
    # What a step container is given instead of the file: the same values, as variables, no secrets.
    assert overridden.team_env() == {
        "AWS_REGION": "us-east-2",
        "SAIL_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "SAIL_DVC_REMOTE_URL": "s3://other/x",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5001",
        "SAIL_REGISTRY": "127.0.0.1:5000",
        "SAIL_REGISTRY_USERNAME": "ci",
        "SAIL_RETRY_ATTEMPTS": "1",
        "SAIL_RETRY_BACKOFF_SECONDS": "0.5",
    }


# --- the whole pipeline against the team servers ----------------------------------------------


@pytest.fixture(scope="module")
def team_run(tmp_path_factory, s3, mlflow_server, local_registry):
    """A project configured through infrastructure.yaml only, after `sail doctor` and `sail run`."""
    project = team_project(
        tmp_path_factory.mktemp("team"),
        "Team Model",
        s3,
        mlflow_server.uri,
        registry={"url": local_registry},
    )
    doctor = sail(project, "doctor", **CLIENT_AWS)
    ran = ok(sail(project, "run", **CLIENT_AWS))
    return {"project": project, "doctor": doctor, "run": ran}


def test_doctor_finds_every_configured_service_working(team_run, s3, mlflow_server):
    assert team_run["doctor"].returncode == 0, team_run["doctor"].stdout + team_run["doctor"].stderr
    lines = doctor_lines(team_run["doctor"])
    assert {service: status for service, (status, _) in lines.items()} == {
        "config": "ok",
        "signing key": "ok",
        "aws": "ok",
        "s3": "ok",
        "dvc": "ok",
        "mlflow": "ok",
        "registry": "ok",
        "docker": "ok",
    }
    assert lines["config"][1].startswith(f"team mode from {TEAM_FILE}")
    assert lines["s3"][1] == f"bucket {BUCKET} reachable at {s3.endpoint}"
    assert lines["aws"][1] == "credentials from env"
    assert (
        lines["mlflow"][1]
        == f"{mlflow_server.uri} healthy, tracking and registry API answer; artifacts proxied by "
        "the server"
    )
    assert lines["registry"][1].startswith("127.0.0.1:5000 reachable")


def test_data_and_accepted_bundle_are_in_the_bucket(team_run, s3):
    project = team_run["project"]
    stored = set(s3.keys(prefix=f"{project.name}/"))
    expected = dvc_md5_paths(project, project.name)
    # the data, the .dir listing and every bundle file
    assert len(expected) >= 7 and expected <= stored
    data_md5 = yaml.safe_load((project / "data" / "raw" / "data.csv.dvc").read_text())["outs"][0][
        "md5"
    ]
    assert (
        s3.read(f"{project.name}/files/md5/{data_md5[:2]}/{data_md5[2:]}")
        == (project / "data" / "raw" / "data.csv").read_bytes()
    )
    assert not (project / "dvc-storage").exists()  # nothing went to the embedded remote


def test_mlflow_server_holds_the_version_its_alias_and_the_artifacts_in_s3(
    team_run, s3, mlflow_server
):
    project = team_run["project"]
    client = mlflow_server.client()
    version = client.get_model_version_by_alias("team_model", "candidate")
    gate = json.loads((project / "reports" / "gate.json").read_text())
    assert str(version.version) == gate["registered_version"] == "1"
    assert version.tags["sail.accepted_bundle_id"] == gate["accepted_bundle_id"]
    assert client.get_run(version.run_id).data.tags["git_commit"] == gate["git_commit"]
    run = client.get_run(version.run_id)
    model = f"mlflow/{run.info.experiment_id}/{version.run_id}/artifacts/accepted_bundle/"
    prefix = model + "data/accepted/"  # the MLflow model (MLmodel) holds the signed bundle
    assert {"MLmodel", "requirements.txt"} <= {
        key.removeprefix(model) for key in s3.keys(prefix=model)
    }
    assert {"MANIFEST.json", "SIGNATURE.json", "metadata.json", "model.joblib", "holdout.json"} <= {
        key.removeprefix(prefix) for key in s3.keys(prefix=prefix)
    }
    assert (
        s3.read(prefix + "MANIFEST.json")
        == (project / "models" / "accepted" / "MANIFEST.json").read_bytes()
    )
    assert not (project / ".mlflow").exists()  # nothing went to the embedded store


def test_team_remote_lives_in_the_uncommitted_dvc_config(team_run, s3):
    project = team_run["project"]
    committed = (project / ".dvc" / "config").read_text()
    assert "sail-env" not in committed and "s3://" not in committed
    local = (project / ".dvc" / "config.local").read_text()
    assert (
        f"url = s3://{BUCKET}/{project.name}" in local
        and f"endpointurl = {s3.endpoint}" in local
        and f"region = {REGION}" in local
    )
    # credentials stay in the environment
    assert "key" not in local and "secret" not in local and "token" not in local
    # never committed
    assert (
        subprocess.run(["git", "check-ignore", "-q", ".dvc/config.local"], cwd=project).returncode
        == 0
    )


def test_promoted_champion_is_rescored_from_its_bundle_in_s3(team_run):
    project = team_run["project"]
    ok(sail(project, "promote", **CLIENT_AWS))
    ok(sail(project, "gate", **CLIENT_AWS))
    report = json.loads((project / "reports" / "gate.json").read_text())
    assert (
        report["champion"]["version"] == "1"
        and report["champion"]["metrics_source"] == "rescored on this test set"
    )


@pytest.mark.timeout(2400)  # above build + package + publish (1800 s), and team_run when first
def test_inference_image_is_published_to_the_registry_named_in_the_team_file(
    team_run, local_registry, base_image
):
    """`sail package` and `sail publish` take the registry from infrastructure.yaml; the digest
    recorded is the one the registry serves."""
    project = team_run["project"]
    env = {**CLIENT_AWS, "SAIL_BASE_IMAGE": base_image}
    ok(sail(project, "build", **env, timeout=900))
    ok(sail(project, "package", **env, timeout=600))
    image = json.loads((project / "reports" / "package.json").read_text())["image"]
    published = json.loads(ok(sail(project, "publish", **env, timeout=300)).stdout)["images"]
    assert image.startswith(f"{local_registry}/team-model/inference:") and image in published
    assert any("/team-model/train:" in ref for ref in published) and any(
        "/team-model/metric:" in ref for ref in published
    )
    repository, _, tag = image.removeprefix(f"{local_registry}/").rpartition(":")
    assert (
        tag
        in requests.get(f"http://{local_registry}/v2/{repository}/tags/list", timeout=10).json()[
            "tags"
        ]
    )
    manifest = requests.head(
        f"http://{local_registry}/v2/{repository}/manifests/{tag}",
        timeout=10,
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
    )
    assert manifest.headers["Docker-Content-Digest"] == published[image]


@pytest.mark.timeout(2400)  # above build + package + publish (1800 s), and team_run when first
def test_images_are_published_to_the_password_protected_team_registry(
    team_run, auth_registry, base_image
):
    """The registry and its user come from infrastructure.yaml, the password from the environment;
    every pushed digest is the one the registry serves."""
    project = team_run["project"]
    write_infrastructure(
        project, registry={"url": auth_registry.address, "username": REGISTRY_USER}
    )
    env = {
        **CLIENT_AWS,
        "SAIL_BASE_IMAGE": base_image,
        "SAIL_REGISTRY_PASSWORD": auth_registry.password,
    }
    ok(sail(project, "build", **env, timeout=900))
    ok(sail(project, "package", **env, timeout=600))
    published = json.loads(ok(sail(project, "publish", **env, timeout=300)).stdout)["images"]
    image = json.loads((project / "reports" / "package.json").read_text())["image"]
    assert any(ref.endswith(image.rpartition("/")[2]) for ref in published)
    auth = (REGISTRY_USER, auth_registry.password)
    for ref, digest in published.items():
        repository, _, tag = ref.removeprefix(f"{auth_registry.address}/").rpartition(":")
        base = f"http://{auth_registry.address}/v2/{repository}"
        assert tag in requests.get(f"{base}/tags/list", auth=auth, timeout=10).json()["tags"]
        manifest = requests.head(
            f"{base}/manifests/{tag}",
            auth=auth,
            timeout=10,
            headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.manifest.v1+json"
            },
        )
        assert manifest.headers["Docker-Content-Digest"] == digest


def test_direct_artifacts_and_an_assumed_role_from_the_environment_only(
    tmp_path, s3, mlflow_direct
):
    """The server does not proxy artifacts (and cannot reach S3): the client writes them with the
    endpoint and the role's credentials sail gives it. No infrastructure.yaml edit at all."""
    project = bake(tmp_path, project_name="Direct Model")
    env = {
        **CLIENT_AWS,
        "MLFLOW_TRACKING_URI": mlflow_direct.uri,
        "SAIL_DVC_REMOTE_URL": f"s3://{BUCKET}/direct-model",
        "SAIL_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_REGION": REGION,
        "SAIL_AWS_ROLE_ARN": ROLE,
    }
    doctor = doctor_lines(ok(sail(project, "doctor", **env)))
    assert doctor["aws"] == ("ok", f"assumed role {ROLE} as session sail-{getpass.getuser()}")
    assert doctor["mlflow"] == (
        "ok",
        f"{mlflow_direct.uri} healthy, tracking and registry API answer; "
        f"artifacts written by this client to s3://{BUCKET} (reachable)",
    )
    no_store = {
        **env,
        "SAIL_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "SAIL_AWS_ROLE_ARN": "",
        "AWS_MAX_ATTEMPTS": "1",
    }
    status, detail = doctor_lines(sail(project, "doctor", **no_store))["mlflow"]
    assert (
        status == "FAIL"
        and f"but artifacts go straight to s3://{BUCKET} and this client gets: Could not connect"
        in detail
    )
    ok(sail(project, "run", **env))
    version = mlflow_direct.client().get_model_version_by_alias("direct_model", "candidate")
    assert version.source.startswith(f"s3://{BUCKET}/mlflow-direct/")
    assert s3.keys(prefix=version.source.removeprefix(f"s3://{BUCKET}/") + "/")
    assert dvc_md5_paths(project, "direct-model") <= set(s3.keys(prefix="direct-model/"))
    from moto.backends import get_backend

    sessions = {
        (r.role_arn, r.session_name)
        for r in get_backend("sts")["123456789012"]["global"].assumed_roles
    }
    assert (ROLE, f"sail-{getpass.getuser()}") in sessions
    # the role's credentials came through the environment
    assert "profile" not in (project / ".dvc" / "config.local").read_text()


def test_ecr_login_token_comes_from_boto3(tmp_path, s3, monkeypatch):
    """An ECR registry needs no password: the token comes from ecr:GetAuthorizationToken (moto's ECR
    here)."""
    from sail_pipelines.clients import registry

    # boto3's own per-service endpoint variable
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", s3.endpoint)
    for name, value in CLIENT_AWS.items():
        monkeypatch.setenv(name, value)
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    settings = Settings.from_env(ProjectPaths(tmp_path), {"SAIL_REGISTRY": f"{host}/ml"})
    creds = registry.credentials(settings)
    assert (creds.server, creds.username) == (f"https://{host}", "AWS") and creds.password
    assert creds.password not in repr(creds)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SailError, match=f"registry {host}: no ECR login token: Could not connect"):
        registry.credentials(settings)


# --- sail doctor against broken services -------------------------------------------------------


def test_doctor_reports_each_broken_service_on_its_line(tmp_path, s3, mlflow_server):
    project = bake(tmp_path, project_name="Broken Model")
    closed = free_port()
    env = {
        **CLIENT_AWS,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed}",
        "SAIL_DVC_REMOTE_URL": "s3://no-such-bucket/x",
        "SAIL_S3_ENDPOINT_URL": s3.endpoint,
        "SAIL_REGISTRY": f"127.0.0.1:{closed}",
        "SAIL_ALLOW_DEV_KEY": "1",
    }
    started = time.monotonic()
    result = sail(project, "doctor", key=None, **env)
    assert time.monotonic() - started < 60
    lines = doctor_lines(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines["signing key"] == (
        "FAIL",
        "SAIL_ALLOW_DEV_KEY=1 in team mode: shared models need a real key pair (`sail keygen`)",
    )
    assert lines["s3"] == ("FAIL", f"bucket no-such-bucket at {s3.endpoint}: no such bucket")
    assert lines["mlflow"] == ("FAIL", f"http://127.0.0.1:{closed}: unreachable (ConnectionError)")
    assert lines["registry"] == (
        "FAIL",
        f"127.0.0.1:{closed}: cannot reach http://127.0.0.1:{closed}/v2/: ConnectionError",
    )
    assert lines["dvc"][0] == "ok" and lines["docker"][0] == "ok"
    assert (
        result.stderr.strip()
        == "sail doctor: error: 4 of 8 checks failed: signing key, s3, mlflow, registry"
    )

    # An S3 endpoint that refuses connections, a 503 from MLflow, and an unreachable Docker daemon.
    proxy = FaultProxy(mlflow_server.uri).up()
    proxy.fail(503)
    try:
        env.update(
            SAIL_S3_ENDPOINT_URL=f"http://127.0.0.1:{closed}",
            MLFLOW_TRACKING_URI=proxy.url,
            DOCKER_HOST=f"tcp://127.0.0.1:{closed}",
        )
        lines = doctor_lines(sail(project, "doctor", **env))
    finally:
        proxy.down()
    assert (
        lines["s3"][0] == "FAIL"
        and f"bucket no-such-bucket at http://127.0.0.1:{closed}: Could not connect"
        in lines["s3"][1]
    )
    assert lines["mlflow"] == ("FAIL", f"{proxy.url}/health answered HTTP 503")
    assert (
        lines["docker"][0] == "FAIL"
        and "Docker is not reachable at tcp://127.0.0.1" in lines["docker"][1]
    )


def test_doctor_names_missing_keys_credentials_and_remotes(tmp_path, s3, local_registry):
    project = bake(tmp_path, project_name="Bare Model")
    # No AWS identity anywhere: no variables, no ~/.aws files, no instance metadata lookups.
    no_aws = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    s3_host = s3.endpoint.removeprefix("http://")
    env = {
        **no_aws,
        "SAIL_DVC_REMOTE_URL": f"s3://{BUCKET}/bare",
        "SAIL_S3_ENDPOINT_URL": s3.endpoint,
        "SAIL_REGISTRY": s3_host,
    }
    result = sail(project, "doctor", key=None, **env)
    lines = doctor_lines(result)
    assert result.returncode == 1
    assert lines["signing key"] == (
        "FAIL",
        "SAIL_SIGNING_KEY is not set: train, evaluate, gate and serve will refuse to run",
    )
    assert lines["aws"] == (
        "FAIL",
        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, aws.profile or "
        "aws.role_arn",
    )
    assert lines["s3"] == (
        "FAIL",
        f"bucket {BUCKET} at {s3.endpoint}: Unable to locate credentials",
    )
    assert lines["registry"] == (
        "FAIL",
        f"{s3_host}: GET http://{s3_host}/v2/ answered HTTP 404, not a registry API",
    )

    from sail_pipelines.integrity.signing import dev_pair

    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        **CLIENT_AWS,
        "SAIL_AWS_ROLE_ARN": ROLE,
        "SAIL_S3_ENDPOINT_URL": closed,
        "SAIL_DVC_REMOTE_URL": f"s3://{BUCKET}/bare",
        "SAIL_REGISTRY": local_registry,
        "SAIL_REGISTRY_PASSWORD": "orphan-password",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = sail(project, "doctor", key=dev_pair().text(), **env)
    lines = doctor_lines(result)
    assert lines["signing key"] == ("FAIL", "SAIL_SIGNING_KEY is the public development key")
    assert lines["aws"][0] == "FAIL" and lines["aws"][1].startswith(
        f"AWS: cannot assume role {ROLE}: Could not connect to the endpoint URL"
    )
    assert lines["registry"] == (
        "FAIL",
        f"registry {local_registry}: SAIL_REGISTRY_PASSWORD is set but no user name "
        "(registry.username or SAIL_REGISTRY_USERNAME)",
    )
    assert "orphan-password" not in result.stdout + result.stderr

    dvc(project, "remote", "remove", "local")
    assert doctor_lines(sail(project, "doctor"))["dvc"] == (
        "FAIL",
        "no DVC remote: set dvc.remote_url in infrastructure.yaml (or SAIL_DVC_REMOTE_URL)",
    )


def test_doctor_refuses_credentials_in_the_committed_dvc_config(tmp_path):
    project = bake(tmp_path, project_name="Leaky Model")
    # The mistake: `dvc remote modify` without --local writes the secret to the committed file.
    dvc(project, "remote", "add", "storage", "s3://team-data/leaky")
    dvc(project, "remote", "modify", "storage", "secret_access_key", "wJalrXUtnFEMI-example")
    result = sail(project, "doctor")
    assert result.returncode == 1 and "wJalrXUtnFEMI-example" not in result.stdout + result.stderr
    assert doctor_lines(result)["dvc"] == (
        "FAIL",
        "credentials in the committed .dvc/config (remote.storage.secret_access_key): remove "
        "them, use the environment",
    )


def test_doctor_and_login_against_a_password_protected_registry(tmp_path, auth_registry):
    project = bake(tmp_path, project_name="Locked Model")
    env = {"SAIL_REGISTRY": auth_registry.address}
    assert doctor_lines(sail(project, "doctor", **env))["registry"] == (
        "FAIL",
        f"{auth_registry.address} asks for credentials (GET /v2/ 401): set registry.username and "
        "SAIL_REGISTRY_PASSWORD",
    )
    wrong = sail(
        project,
        "doctor",
        **env,
        SAIL_REGISTRY_USERNAME=REGISTRY_USER,
        SAIL_REGISTRY_PASSWORD="not-the-password",
    )
    status, detail = doctor_lines(wrong)["registry"]
    assert (
        status == "FAIL"
        and f"login as '{REGISTRY_USER}' refused" in detail
        and "not-the-password" not in wrong.stdout + wrong.stderr
    )
    only_user = doctor_lines(sail(project, "doctor", **env, SAIL_REGISTRY_USERNAME=REGISTRY_USER))[
        "registry"
    ]
    assert only_user == (
        "FAIL",
        f"registry {auth_registry.address}: user '{REGISTRY_USER}' is set but "
        "SAIL_REGISTRY_PASSWORD is not",
    )
    write_infrastructure(
        project, registry={"url": auth_registry.address, "username": REGISTRY_USER}
    )
    good = sail(project, "doctor", SAIL_REGISTRY_PASSWORD=auth_registry.password)
    assert good.returncode == 0, good.stdout + good.stderr
    assert doctor_lines(good)["registry"] == (
        "ok",
        f"{auth_registry.address} reachable at http://{auth_registry.address}/v2/, docker login "
        f"accepted (user '{REGISTRY_USER}')",
    )


def tiny_image(client, ref: str):
    """An image of one small file (FROM scratch): something to push in seconds."""
    buffer = io.BytesIO()
    files = {"Dockerfile": b"FROM scratch\nCOPY hello /hello\n", "hello": b"hello\n"}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return client.images.build(fileobj=buffer, custom_context=True, tag=ref, rm=True)[0]


def test_publish_logs_in_to_a_password_protected_registry_and_pushes(tmp_path, auth_registry):
    """What the registry holds after `sail publish`: the image, pushed with the login the
    settings give; nothing after a publish without a password or with a wrong one."""
    import docker

    project = bake(tmp_path, project_name="Locked Model")
    client = docker.from_env()
    local = "locked-model/train:c0ffee"
    target = f"{auth_registry.address}/{local}"
    tiny_image(client, local)
    (project / ".sail").mkdir(exist_ok=True)
    (project / ".sail" / "images.json").write_text(json.dumps({"train": local}))  # as `sail build`
    env = {"SAIL_REGISTRY": auth_registry.address, "SAIL_REGISTRY_USERNAME": REGISTRY_USER}
    api = f"http://{auth_registry.address}/v2/locked-model/train"
    auth = (REGISTRY_USER, auth_registry.password)
    try:
        anonymous = sail(project, "publish", SAIL_REGISTRY=auth_registry.address)
        assert anonymous.returncode == 1, anonymous.stderr
        assert f"sail publish: error: pushing {target} failed: " in anonymous.stderr
        wrong = sail(project, "publish", **env, SAIL_REGISTRY_PASSWORD="not-the-password")
        assert wrong.returncode == 1 and f"login as '{REGISTRY_USER}' refused" in wrong.stderr
        assert "not-the-password" not in wrong.stdout + wrong.stderr
        nothing = requests.get(f"{api}/tags/list", auth=auth, timeout=10)
        assert nothing.status_code == 404, nothing.text  # no repository: nothing arrived

        login = {**env, "SAIL_REGISTRY_PASSWORD": auth_registry.password}
        published = ok(sail(project, "publish", **login))
        digests = json.loads(published.stdout)["images"]
        assert list(digests) == [target]
        assert auth_registry.password not in published.stdout + published.stderr
        assert requests.get(f"{api}/tags/list", auth=auth, timeout=10).json()["tags"] == ["c0ffee"]
        manifest = requests.head(
            f"{api}/manifests/c0ffee",
            auth=auth,
            timeout=10,
            headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.manifest.v1+json"
            },
        )
        assert manifest.headers["Docker-Content-Digest"] == digests[target]
        asked = requests.get(f"{api}/tags/list", timeout=10)
        assert asked.status_code == 401  # the registry does ask for the login
    finally:
        for ref in (target, local):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(ref, force=True)
