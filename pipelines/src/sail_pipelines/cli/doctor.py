"""`sail doctor`: one line per service the project is configured to use, saying whether it works;
`sail doctor --ci`: what a CI run of the project keeps and what it loses with the job.

Each check talks to the real service (MLflow /health and its registry API, S3 head_bucket, STS,
the registry's /v2/ and a Docker login, the Docker daemon) with short timeouts. A service that
is not configured is reported `off` (embedded mode); anything configured but broken is `FAIL`,
and the command exits 1 naming them. Secrets are only ever reported as set or missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from sail_pipelines.clients import aws, containers, registry, tracking
from sail_pipelines.clients.dvc import dvc
from sail_pipelines.config import (
    SIGNING_SCHEMES,
    TEAM_FILE,
    ProjectPaths,
    Settings,
    load_params,
    redact,
    stores,
)
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import signing

OK, FAIL, WARN, OFF = "ok", "FAIL", "warn", "off"
DEFAULT_EXPERIMENT = (
    "0"  # every MLflow server has it; its artifact location shows where artifacts go
)
# DVC remote options that hold credentials: they may live in .dvc/config.local, never in the
# committed .dvc/config.
DVC_SECRETS = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "password",
    "ask_password",
    "sse_customer_key",
    "token",
)


@dataclass(frozen=True)
class Check:
    service: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.service:<12} {self.detail}"


def check_config(settings: Settings) -> Check:
    sources = sorted({origin for _, origin in settings.origins})
    if not settings.team_mode:
        return Check(
            "config",
            OK,
            f"embedded mode: nothing shared configured in {TEAM_FILE} or the environment",
        )
    keys = ", ".join(f"{key} ({origin})" for key, origin in settings.origins)
    return Check("config", OK, f"team mode from {', '.join(sources)}: {keys}")


def check_signing_key(settings: Settings, scheme: str) -> Check:
    """The bundle keys this host holds: a signing key (CI), or only the public key (a host that
    verifies: serve, predict, smoke, deploy). Parse errors come back as SailError → FAIL."""
    if settings.signing_key:
        key = signing.signing_key(settings, scheme)
        if key.verify_key.key_id == signing.dev_pair().key_id:
            return Check("signing key", FAIL, "SAIL_SIGNING_KEY is the public development key")
        verifier = signing.verify_key(settings, scheme)
        if verifier.key_id != key.key_id:
            return Check(
                "signing key",
                FAIL,
                f"SAIL_SIGNING_KEY (key id {key.key_id}) and "
                f"SAIL_VERIFY_KEY (key id {verifier.key_id}) are not one pair",
            )
        return Check(
            "signing key", OK, f"SAIL_SIGNING_KEY set ({key.algorithm}, key id {key.key_id})"
        )
    if settings.verify_key:
        key_id = signing.verify_key(settings, scheme).key_id
        return Check(
            "signing key",
            OK,
            f"SAIL_VERIFY_KEY set (key id {key_id}): this host "
            "verifies only (serve, predict, smoke, package, deploy)",
        )
    if settings.allow_dev_key:
        if settings.team_mode:
            return Check(
                "signing key",
                FAIL,
                "SAIL_ALLOW_DEV_KEY=1 in team mode: shared models "
                "need a real key pair (`sail keygen`)",
            )
        return Check(
            "signing key", WARN, "public development key (SAIL_ALLOW_DEV_KEY=1): demos only"
        )
    return Check(
        "signing key",
        FAIL,
        "SAIL_SIGNING_KEY is not set: train, evaluate, gate and serve will refuse to run",
    )


def check_aws(settings: Settings) -> Check:
    uses_s3 = (settings.dvc_remote_url or "").startswith("s3://")
    uses_ecr = bool(settings.registry and registry.ECR_HOST.match(registry.host(settings.registry)))
    if not (uses_s3 or uses_ecr or settings.aws.role_arn):
        return Check("aws", OFF, "no S3 remote, ECR registry or role configured")
    if settings.aws.role_arn:
        aws.assumed_credentials(settings.aws)
        return Check(
            "aws", OK, f"assumed role {settings.aws.role_arn} as session {aws.session_name()}"
        )
    creds = aws.session(settings.aws).get_credentials()
    if creds is None:
        return Check(
            "aws",
            FAIL,
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, aws.profile or "
            "aws.role_arn",
        )
    return Check(
        "aws",
        OK,
        f"credentials from {creds.method}"
        + (f", profile {settings.aws.profile}" if settings.aws.profile else ""),
    )


def bucket_problem(settings: Settings, bucket: str) -> str | None:
    """Why this identity cannot use the bucket (head_bucket), or None when it can."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        aws.client(settings.aws, "s3").head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return {
            404: "no such bucket",
            403: "access denied",
            301: "the bucket is in another region",
        }.get(status, aws.reason(exc))
    except BotoCoreError as exc:
        return aws.reason(exc)
    return None


def check_s3(settings: Settings) -> Check:
    url = settings.dvc_remote_url or ""
    if not url.startswith("s3://"):
        return Check("s3", OFF, "the DVC remote is not on S3")
    bucket, where = urlsplit(url).netloc, settings.aws.endpoint_url or "AWS"
    problem = bucket_problem(settings, bucket)
    if problem:
        return Check("s3", FAIL, f"bucket {bucket} at {where}: {problem}")
    return Check("s3", OK, f"bucket {bucket} reachable at {where}")


def check_dvc(paths: ProjectPaths, settings: Settings) -> Check:
    """Which remote `sail push` uses, and that no credential sits in the committed .dvc/config."""
    listing = dvc(paths.root, "config", "--list", "--show-origin")
    entries = []
    for line in listing.splitlines():
        origin, _, setting = line.partition("\t")
        key, _, value = setting.strip().partition("=")
        entries.append((origin.strip(), key, value))
    leaked = [
        key
        for origin, key, _ in entries
        if origin.endswith(".dvc/config") and key.rsplit(".", 1)[-1] in DVC_SECRETS
    ]
    if leaked:
        return Check(
            "dvc",
            FAIL,
            f"credentials in the committed .dvc/config ({', '.join(leaked)}): remove them, use "
            "the environment",
        )
    if settings.dvc_remote_url:
        return Check(
            "dvc",
            OK,
            f"sail push sends to {settings.dvc_remote_url} (remote sail-env, kept in "
            ".dvc/config.local)",
        )
    default = next((value for _, key, value in entries if key == "core.remote"), None)
    url = next((value for _, key, value in entries if key == f"remote.{default}.url"), None)
    if not url:
        return Check(
            "dvc",
            FAIL,
            "no DVC remote: set dvc.remote_url in infrastructure.yaml (or SAIL_DVC_REMOTE_URL)",
        )
    return Check("dvc", OK, f"sail push sends to the default remote {default} ({url})")


def check_mlflow(settings: Settings) -> Check:
    uri = settings.tracking_uri
    if urlsplit(uri).scheme not in ("http", "https"):
        return Check(
            "mlflow",
            OK,
            f"{'embedded' if settings.artifact_location else 'local'} store {redact(uri)}",
        )
    import requests

    shown = redact(uri)
    try:
        health = requests.get(f"{uri}/health", timeout=10)
    except requests.RequestException as exc:
        return Check("mlflow", FAIL, f"{shown}: unreachable ({type(exc).__name__})")
    if health.status_code != 200:
        return Check("mlflow", FAIL, f"{shown}/health answered HTTP {health.status_code}")
    client = tracking.client(settings)
    with tracking.reachable(settings, "listing registered models"):
        client.search_registered_models(max_results=1)
        root = client.get_experiment(DEFAULT_EXPERIMENT).artifact_location
    healthy = f"{shown} healthy, tracking and registry API answer"
    if not root.startswith("s3://"):
        proxied = root.startswith(("mlflow-artifacts:", "http"))
        return Check(
            "mlflow",
            OK,
            f"{healthy}; artifacts {'proxied by the server' if proxied else f'at {root}'}",
        )
    # The server hands out s3:// artifact URIs: this client writes them itself, so it needs the
    # bucket.
    bucket = urlsplit(root).netloc
    problem = bucket_problem(settings, bucket)
    if problem:
        return Check(
            "mlflow",
            FAIL,
            f"{healthy}, but artifacts go straight to s3://{bucket} and this client gets: "
            f"{problem}",
        )
    return Check(
        "mlflow", OK, f"{healthy}; artifacts written by this client to s3://{bucket} (reachable)"
    )


def check_registry(settings: Settings) -> Check:
    if not settings.registry:
        return Check("registry", OFF, "no image registry: images stay local")
    return Check("registry", OK, registry.probe(settings))


def check_docker(settings: Settings) -> Check:
    try:
        client = containers.docker_client()
    except SailError as exc:
        # Only publishing needs the daemon for sure; embedded runs work without containers.
        return Check(
            "docker",
            FAIL if settings.registry else WARN,
            f"{exc} (needed by sail build, package, publish)",
        )
    return Check("docker", OK, f"daemon {client.version().get('Version', '?')} reachable")


def scheme(paths: ProjectPaths) -> str:
    return load_params(paths).signing_scheme if paths.params.is_file() else SIGNING_SCHEMES[0]


def run(paths: ProjectPaths, settings: Settings, say: Callable[[str], None]) -> list[Check]:
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("config", lambda: check_config(settings)),
        ("signing key", lambda: check_signing_key(settings, scheme(paths))),
        ("aws", lambda: check_aws(settings)),
        ("s3", lambda: check_s3(settings)),
        ("dvc", lambda: check_dvc(paths, settings)),
        ("mlflow", lambda: check_mlflow(settings)),
        ("registry", lambda: check_registry(settings)),
        ("docker", lambda: check_docker(settings)),
    ]
    checks = []
    for service, check in steps:
        try:
            result = check()
        except SailError as exc:
            result = Check(service, FAIL, str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            result = Check(
                service,
                FAIL,
                redact(
                    f"{type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
                ),
            )
        checks.append(result)
        say(result.line())
    failed = [c.service for c in checks if c.status == FAIL]
    if failed:
        raise SailError(f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")
    return checks


def ci_report(
    paths: ProjectPaths, settings: Settings, env: Mapping[str, str], say: Callable[[str], None]
) -> list[str]:
    """`sail doctor --ci`: what a CI run of this project keeps and loses, as Markdown lines (the
    job summary; readable as plain text in a Jenkins log). The rule is config/stores.py's."""
    lines = _ci_lines(paths, settings, env)
    for line in lines:
        say(line)
    return lines


def _ci_lines(paths: ProjectPaths, settings: Settings, env: Mapping[str, str]) -> list[str]:
    found = stores.stores(paths, settings, env)
    lines = [f"### sail doctor --ci: what a CI run keeps ({stores.ci(env) or 'CI'})", ""]
    for store in found:
        kept = stores.WHAT_IS_LOST[store.kind]
        if store.kept:
            lines.append(f"- keeps {kept}: {store.kind} {store.where}")
        else:
            lines.append(f"- LOSES {kept}: {stores.problem(store, env)}")
    lost = {s.kind for s in found if not s.kept}
    refused = [step for step, needs in stores.NEEDS.items() if lost & set(needs)]
    lines.append("")
    if not refused:
        lines.append("Every step keeps its work.")
        return lines
    if stores.allowed(env):
        lines.append(
            f"{stores.OPT_OUT}=1: {', '.join(refused)} run anyway and keep nothing (demos only)."
        )
    else:
        lines.append(f"Refused in CI until that is set: {', '.join(refused)}.")
    if stores.TRACKING in lost:
        lines.append(
            "Pull requests still train, judge (`sail gate --no-register`) and report, on the "
            "thresholds alone: no team tracking server configured, so no champion to compare."
        )
    return lines
