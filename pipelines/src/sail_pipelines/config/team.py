"""The team settings: infrastructure.yaml, overridden by the environment, and the secrets that
only the environment holds."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from sail_pipelines.config.messages import yaml_problem
from sail_pipelines.config.paths import ProjectPaths
from sail_pipelines.errors import SailError

TEAM_FILE = "infrastructure.yaml"

# Every key of the team file and the environment variables that override it (the first one set
# wins). The generated infrastructure.yaml documents the same mapping in its comments.
TEAM_KEYS: dict[str, tuple[str, ...]] = {
    "aws.region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws.profile": ("AWS_PROFILE",),
    "aws.role_arn": ("SAIL_AWS_ROLE_ARN",),
    "aws.endpoint_url": ("SAIL_S3_ENDPOINT_URL",),
    "dvc.remote_url": ("SAIL_DVC_REMOTE_URL",),
    "mlflow.tracking_uri": ("MLFLOW_TRACKING_URI",),
    "registry.url": ("SAIL_REGISTRY",),
    "registry.username": ("SAIL_REGISTRY_USERNAME",),
    "registry.base_image": ("SAIL_BASE_IMAGE",),
    "retry.attempts": ("SAIL_RETRY_ATTEMPTS",),
    "retry.backoff_seconds": ("SAIL_RETRY_BACKOFF_SECONDS",),
}
# Keys people reach for that must stay in the environment (the file is committed), and where
# each section's secrets come from instead.
SECRET_NAMES = {
    "password",
    "secret",
    "token",
    "api_key",
    "access_key",
    "access_key_id",
    "secret_access_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "session_token",
    "signing_key",
    "audit_key",
    "private_key",
}
SECRET_ENV = {
    "aws": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    "dvc": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    "mlflow": "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
    "registry": "SAIL_REGISTRY_PASSWORD",
}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY = re.compile(rf"^{_HOST}(?::\d{{1,5}})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")
_NAME = re.compile(r"^[\w.@+=,-]{1,128}$")


@dataclass(frozen=True)
class AwsSettings:
    """Who sail is on AWS (or an S3-compatible store): all None means boto3's own defaults."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None  # assumed through STS before any S3 or ECR call
    endpoint_url: str | None = None  # S3-compatible store (MinIO, Ceph, moto); also its STS

    @property
    def configured(self) -> bool:
        return any((self.region, self.profile, self.role_arn, self.endpoint_url))


@dataclass(frozen=True)
class RetryPolicy:
    """How often a push to team storage is tried, waiting backoff_seconds * 2**n between tries."""

    attempts: int = 4
    backoff_seconds: float = 2.0


@dataclass(frozen=True)
class Settings:
    """What the environment decides: embedded defaults unless the project's infrastructure.yaml or a
    variable points at team infrastructure. Secrets come from the environment only and stay out of
    repr."""

    tracking_uri: str
    artifact_location: str | None
    signing_key: bytes | None = field(repr=False)
    allow_dev_key: bool
    dvc_remote_url: str | None
    registry: str | None  # image registry prefix, e.g. 127.0.0.1:5000; None keeps images local
    base_image: str | None  # BASE_IMAGE build argument; None keeps the Dockerfile's default
    aws: AwsSettings = AwsSettings()
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    retry: RetryPolicy = RetryPolicy()
    verify_key: str | None = None  # public key text: not a secret, but only the environment sets it
    audit_key: str | None = field(default=None, repr=False)
    audit_verify_key: str | None = None
    # (team key, where its value came from), for `sail doctor`
    origins: tuple[tuple[str, str], ...] = ()
    # SAIL_SEARCH_STORAGE: an Optuna RDB URL the workers of one search share (may hold a password)
    search_storage: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """Without the secrets (repr=False fields) and without user:password in URIs."""
        shown = ((f.name, getattr(self, f.name)) for f in fields(self) if f.repr)
        items = (f"{n}={redact(v)!r}" if isinstance(v, str) else f"{n}={v!r}" for n, v in shown)
        return f"Settings({', '.join(items)})"

    def team_env(self) -> dict[str, str]:
        """The configured team values as the variables that set them: a step container sees the
        environment, not infrastructure.yaml. No secrets: those are passed as they came."""
        values = {
            "mlflow.tracking_uri": None if self.artifact_location else self.tracking_uri,
            "dvc.remote_url": self.dvc_remote_url,
            "registry.url": self.registry,
            "registry.username": self.registry_username,
            "registry.base_image": self.base_image,
            "aws.region": self.aws.region,
            "aws.profile": self.aws.profile,
            "aws.role_arn": self.aws.role_arn,
            "aws.endpoint_url": self.aws.endpoint_url,
            "retry.attempts": self.retry.attempts
            if "retry.attempts" in dict(self.origins)
            else None,
            "retry.backoff_seconds": self.retry.backoff_seconds
            if "retry.backoff_seconds" in dict(self.origins)
            else None,
        }
        return {TEAM_KEYS[key][0]: str(value) for key, value in values.items() if value is not None}

    @property
    def team_mode(self) -> bool:
        """True when any shared service (AWS, DVC remote, MLflow server, registry) is configured."""
        return any(
            key.split(".")[0] in ("aws", "dvc", "mlflow") or key.startswith("registry.u")
            for key, _ in self.origins
        )

    @classmethod
    def from_env(cls, paths: ProjectPaths, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values, origins = team_values(paths.root / TEAM_FILE, env)
        local_store = paths.root / ".mlflow"
        tracking_uri = values.get("mlflow.tracking_uri")
        key = env.get("SAIL_SIGNING_KEY")
        return cls(
            tracking_uri=tracking_uri or f"sqlite:///{local_store / 'mlflow.db'}",
            # Only the embedded SQLite store needs us to choose where artifacts go.
            artifact_location=None if tracking_uri else (local_store / "artifacts").as_uri(),
            signing_key=key.encode() if key else None,
            allow_dev_key=env.get("SAIL_ALLOW_DEV_KEY", "").lower() in ("1", "true", "yes"),
            dvc_remote_url=values.get("dvc.remote_url"),
            registry=values.get("registry.url"),
            base_image=values.get("registry.base_image"),
            aws=AwsSettings(
                region=values.get("aws.region"),
                profile=values.get("aws.profile"),
                role_arn=values.get("aws.role_arn"),
                endpoint_url=values.get("aws.endpoint_url"),
            ),
            registry_username=values.get("registry.username"),
            registry_password=env.get("SAIL_REGISTRY_PASSWORD") or None,
            verify_key=env.get("SAIL_VERIFY_KEY") or None,
            audit_key=env.get("SAIL_AUDIT_KEY") or None,
            audit_verify_key=env.get("SAIL_AUDIT_VERIFY_KEY") or None,
            retry=RetryPolicy(
                attempts=values.get("retry.attempts", RetryPolicy.attempts),
                backoff_seconds=values.get("retry.backoff_seconds", RetryPolicy.backoff_seconds),
            ),
            origins=tuple(sorted(origins.items())),
            search_storage=env.get("SAIL_SEARCH_STORAGE", "").strip() or None,
        )


def team_values(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The team settings that are set, from the file overlaid by the environment, checked; and
    where each came from. A missing file is the embedded mode, not an error."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path.is_file():
        for key, value in load_team_file(path).items():
            values[key], origins[key] = value, path.name
    for key, names in TEAM_KEYS.items():
        name = next((n for n in names if env.get(n, "").strip()), None)
        if name is not None:
            values[key], origins[key] = _team_value(key, env[name].strip(), name), name
    return values, origins


def load_team_file(path: Path) -> dict[str, Any]:
    """Parse and check infrastructure.yaml as a whole: unknown keys, wrong types and secrets are
    refused."""
    name = path.name
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SailError(f"{name} is not valid YAML: {yaml_problem(exc)}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SailError(
            f"{name}: expected a mapping of sections ({', '.join(_sections())}) at the top level"
        )
    values: dict[str, Any] = {}
    for section, body in raw.items():
        if section in SECRET_NAMES:
            raise SailError(_secret_message(name, str(section)))
        if section not in _sections():
            raise SailError(
                f"{name}: unknown section {section!r} (known: {', '.join(_sections())})"
            )
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise SailError(
                f"{name}: '{section}' must be a mapping of keys, got {redact(str(body))!r}"
            )
        for key, value in body.items():
            full = f"{section}.{key}"
            if str(key) in SECRET_NAMES:
                raise SailError(_secret_message(name, full))
            if full not in TEAM_KEYS:
                known = [k.split(".", 1)[1] for k in TEAM_KEYS if k.startswith(f"{section}.")]
                raise SailError(
                    f"{name}: unknown key '{full}' (known in {section}: {', '.join(known)})"
                )
            if value is None or value == "":
                continue
            values[full] = _team_value(full, value, f"{name}: {full}", in_file=True)
    return values


def redact(text: str) -> str:
    """Drop user:password@ from a URI (or a registry reference) before it reaches a message."""
    return re.sub(r"(^|//)[^/@\s]*@", r"\1***@", text)


def _sections() -> list[str]:
    return list(dict.fromkeys(k.split(".", 1)[0] for k in TEAM_KEYS))


def _secret_message(name: str, key: str) -> str:
    section, _, leaf = key.rpartition(".")
    named = {"signing_key": "SAIL_SIGNING_KEY", "audit_key": "SAIL_AUDIT_KEY"}
    env = named.get(leaf) or SECRET_ENV.get(section, "the matching environment variable")
    return (
        f"{name}: '{key}' is a secret and never goes in this committed file: set {env} in the "
        "environment"
    )


def _team_value(key: str, value: Any, where: str, in_file: bool = False) -> Any:
    """One checked value; `where` names the file key or the variable in the message."""
    if key == "retry.attempts":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            raise SailError(f"{where} must be a whole number from 1 to 20, got {value!r}")
        return value
    if key == "retry.backoff_seconds":
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not 0 <= number <= 300
        ):
            raise SailError(f"{where} must be a number of seconds from 0 to 300, got {value!r}")
        return float(number)
    if not isinstance(value, str):
        raise SailError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    value = value.strip()
    problem = _CHECKS[key](value, in_file)
    if problem:
        raise SailError(f"{where}: {problem}, got {redact(value)!r}")
    return (
        value.rstrip("/")
        if key in ("aws.endpoint_url", "mlflow.tracking_uri", "registry.url")
        else value
    )


def _check_remote(value: str, in_file: bool) -> str | None:
    if "://" not in value:
        return None  # a local folder, like the embedded remote
    parts = urlsplit(value)
    if parts.scheme != "s3":
        return "a DVC remote must be s3://bucket/path or a local folder"
    if not parts.netloc:
        return "an s3:// url needs a bucket: s3://bucket/path"
    if "@" in parts.netloc or ":" in parts.netloc:
        return (
            "an s3:// url takes no credentials or port (credentials come from the environment, "
            "endpoints from aws.endpoint_url)"
        )
    if not _BUCKET.match(parts.netloc):
        return f"{parts.netloc!r} is not a valid S3 bucket name"
    return None


def _check_http(value: str, what: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} must be an http(s)://host[:port] URL"
    if parts.username or parts.password:
        return f"{what} takes no user:password (credentials come from the environment)"
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return f"{what} has a bad port"
    return None


def _check_tracking(value: str, in_file: bool) -> str | None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            return "an http(s) tracking URI needs a host: http(s)://host[:port]"
        if in_file and (parts.username or parts.password):
            return (
                "a tracking URI in this committed file takes no user:password: "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
            )
        return None
    if not parts.scheme:
        return (
            "the tracking URI needs a scheme: http(s)://host[:port], or sqlite:///path for a "
            "local store"
        )
    return None


def _check_registry(value: str, in_file: bool) -> str | None:
    if "://" in value:
        return (
            "write the registry without a scheme, as host[:port][/namespace] (e.g. 127.0.0.1:5000)"
        )
    if "@" in value:
        return (
            "the registry takes no credentials: set SAIL_REGISTRY_USERNAME and "
            "SAIL_REGISTRY_PASSWORD"
        )
    if not _REGISTRY.match(value.rstrip("/")):
        return "the registry must be host[:port][/namespace] with a lowercase namespace"
    return None


_CHECKS = {
    "aws.region": lambda v, _: (
        None if _REGION.match(v) else "not an AWS region name such as eu-west-1"
    ),
    "aws.profile": lambda v, _: None if _NAME.match(v) else "not an AWS profile name",
    "aws.role_arn": lambda v, _: (
        None
        if _ROLE_ARN.match(v)
        else "not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
    ),
    "aws.endpoint_url": lambda v, _: _check_http(v, "the S3 endpoint"),
    "dvc.remote_url": _check_remote,
    "mlflow.tracking_uri": _check_tracking,
    "registry.url": _check_registry,
    "registry.username": lambda v, _: (
        None if _NAME.match(v) else "not a user name (letters, digits, . @ + = , - _)"
    ),
    "registry.base_image": lambda v, _: (
        None if v and not any(c.isspace() for c in v) else "not an image reference"
    ),
}
