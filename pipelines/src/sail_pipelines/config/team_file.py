"""infrastructure.yaml as pydantic models, and the environment variables that override it read
through pydantic-settings: each value is checked where it is written (the file's key or the
variable), a secret written into the committed file is refused, and the same models give the
file's JSON Schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from sail_pipelines.config.messages import one_line, refuse, yaml_problem
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


def redact(text: str) -> str:
    """Drop user:password@ from a URI (or a registry reference) before it reaches a message."""
    return re.sub(r"(^|//)[^/@\s]*@", r"\1***@", text)


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


def _secret_fix(key: str) -> str:
    section, _, leaf = key.rpartition(".")
    named = {"signing_key": "SAIL_SIGNING_KEY", "audit_key": "SAIL_AUDIT_KEY"}
    env = named.get(leaf) or SECRET_ENV.get(section, "the matching environment variable")
    return f"is a secret and never goes in this committed file; set {env} in the environment"


@dataclass(frozen=True)
class Checked:
    """The check of one team key, run on the raw value so that the message can show it."""

    key: str

    def check(self, value: Any, info: ValidationInfo) -> Any:
        key = self.key
        if value is None or value == "":
            return None
        if key == "retry.attempts":
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
                raise refuse(f"must be a whole number from 1 to 20, got {value!r}")
            return value
        if key == "retry.backoff_seconds":
            try:
                number = float(value) if isinstance(value, str) else value
            except ValueError:
                number = None
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                number = None
            if number is None or not 0 <= number <= 300:
                raise refuse(f"must be a number of seconds from 0 to 300, got {value!r}")
            return float(number)
        if not isinstance(value, str):
            raise refuse(f"must be a string, got {type(value).__name__} {value!r}; quote it")
        value = value.strip()
        problem = _CHECKS[key](value, bool(info.context and info.context.get("in_file")))
        if problem:
            raise refuse(f"{problem}, got {redact(value)!r}", sep=": ")
        return value.rstrip("/") if key in _NO_SLASH else value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.with_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        result = handler(schema)
        result["description"] = f"overridden by {' or '.join(TEAM_KEYS[self.key])}"
        return result


_NO_SLASH = ("aws.endpoint_url", "mlflow.tracking_uri", "registry.url")


class TeamSection(BaseModel):
    """A mapping of known keys; a secret's name is refused before an unknown key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if value is None:
            return {}
        known = ", ".join(cls.model_fields)
        if not isinstance(value, Mapping):
            if not cls.section:
                raise refuse(
                    f"expected a mapping of sections ({known}) at the top level; "
                    "write each section as `name:` with its keys indented below"
                )
            shown = redact(str(value))
            raise refuse(f"must be a mapping of keys ({known}), got {shown!r}; indent its keys")
        for key in value:
            full = f"{cls.section}.{key}" if cls.section else str(key)
            if str(key) in SECRET_NAMES:
                raise refuse(_secret_fix(full), leaf=str(key))
            if key not in cls.model_fields:
                raise refuse(
                    f"is not a known key; use one of {known} (or remove it)", leaf=str(key)
                )
        return value


class AwsFile(TeamSection):
    section = "aws"
    region: Annotated[str | None, Checked("aws.region")] = None
    profile: Annotated[str | None, Checked("aws.profile")] = None
    role_arn: Annotated[str | None, Checked("aws.role_arn")] = None
    endpoint_url: Annotated[str | None, Checked("aws.endpoint_url")] = None


class DvcFile(TeamSection):
    section = "dvc"
    remote_url: Annotated[str | None, Checked("dvc.remote_url")] = None


class MlflowFile(TeamSection):
    section = "mlflow"
    tracking_uri: Annotated[str | None, Checked("mlflow.tracking_uri")] = None


class RegistryFile(TeamSection):
    section = "registry"
    url: Annotated[str | None, Checked("registry.url")] = None
    username: Annotated[str | None, Checked("registry.username")] = None
    base_image: Annotated[str | None, Checked("registry.base_image")] = None


class RetryFile(TeamSection):
    section = "retry"
    attempts: Annotated[int | None, Checked("retry.attempts")] = None
    backoff_seconds: Annotated[float | None, Checked("retry.backoff_seconds")] = None


class TeamFile(TeamSection):
    """The whole of infrastructure.yaml."""

    model_config = ConfigDict(title="infrastructure.yaml")

    aws: AwsFile = AwsFile()
    dvc: DvcFile = DvcFile()
    mlflow: MlflowFile = MlflowFile()
    registry: RegistryFile = RegistryFile()
    retry: RetryFile = RetryFile()

    def values(self) -> dict[str, Any]:
        """{'section.key': value} of the keys that are set."""
        return {
            f"{section}.{key}": value
            for section in type(self).model_fields
            for key, value in getattr(self, section).model_dump().items()
            if value is not None
        }


def load_team_file(path: Path) -> dict[str, Any]:
    """Parse and check infrastructure.yaml as a whole: unknown keys, wrong types and secrets are
    refused."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SailError(f"{path.name} is not valid YAML: {yaml_problem(exc)}") from exc
    try:
        return TeamFile.model_validate(raw, context={"in_file": True}).values()
    except ValidationError as exc:
        raise one_line(exc, path.name, redact) from exc


def _variables(key: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*TEAM_KEYS[key]))


class TeamVariables(BaseSettings):
    """The variables that override infrastructure.yaml, read by pydantic-settings: a field per
    team key with its variables as aliases in TEAM_KEYS' order, so the first one set wins."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True)

    aws__region: str | None = _variables("aws.region")
    aws__profile: str | None = _variables("aws.profile")
    aws__role_arn: str | None = _variables("aws.role_arn")
    aws__endpoint_url: str | None = _variables("aws.endpoint_url")
    dvc__remote_url: str | None = _variables("dvc.remote_url")
    mlflow__tracking_uri: str | None = _variables("mlflow.tracking_uri")
    registry__url: str | None = _variables("registry.url")
    registry__username: str | None = _variables("registry.username")
    registry__base_image: str | None = _variables("registry.base_image")
    retry__attempts: str | None = _variables("retry.attempts")
    retry__backoff_seconds: str | None = _variables("retry.backoff_seconds")


class _Given(EnvSettingsSource):
    """The variables of a given mapping (os.environ, or a test's): blank ones count as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self.given = env
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value.strip() for name, value in self.given.items() if value.strip()}


def environment_values(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The team keys the environment sets, checked as in the file but named by the variable; and
    which variable set each."""

    class Read(TeamVariables):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *args: Any, **kwargs: Any
        ) -> tuple[Any, ...]:
            return (_Given(settings_cls, env),)

    read = Read()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, names in TEAM_KEYS.items():
        raw = getattr(read, key.replace(".", "__"))
        if raw is None:
            continue
        origin = next(name for name in names if env.get(name, "").strip())
        section, leaf = key.split(".")
        try:
            checked = _SECTIONS[section].model_validate({leaf: raw}, context={"in_file": False})
        except ValidationError as exc:
            raise one_line(exc, origin, redact, keyed=False) from exc
        values[key], origins[key] = getattr(checked, leaf), origin
    return values, origins


# The model of each section (aws -> AwsFile, ...), read off the file's model.
_SECTIONS: dict[str, type[TeamSection]] = {name: type(model) for name, model in TeamFile()}
