"""The team settings: infrastructure.yaml, overridden by the environment, and the secrets that
only the environment holds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from sail_pipelines.config.paths import ProjectPaths

# team_file.py (pydantic) is imported where the file or its variables are read, never by serving:
# `sail serve` and `sail predict` take `Settings.for_serving`, so the inference image needs no
# pydantic.


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
        from sail_pipelines.config.team_file import redact

        shown = ((f.name, getattr(self, f.name)) for f in fields(self) if f.repr)
        items = (f"{n}={redact(v)!r}" if isinstance(v, str) else f"{n}={v!r}" for n, v in shown)
        return f"Settings({', '.join(items)})"

    def team_env(self) -> dict[str, str]:
        """The configured team values as the variables that set them: a step container sees the
        environment, not infrastructure.yaml. No secrets: those are passed as they came."""
        from sail_pipelines.config.team_file import TEAM_KEYS

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
        from sail_pipelines.config.team_file import TEAM_FILE

        env = os.environ if env is None else env
        return cls._of(paths, env, *team_values(paths.root / TEAM_FILE, env))

    @classmethod
    def for_serving(cls, paths: ProjectPaths, env: Mapping[str, str] | None = None) -> "Settings":
        """The embedded defaults and the environment's keys: all that verifying a bundle reads.
        Serving uses no team service, so infrastructure.yaml and its variables are not read
        (nor pydantic imported)."""
        return cls._of(paths, os.environ if env is None else env, {}, {})

    @classmethod
    def _of(
        cls,
        paths: ProjectPaths,
        env: Mapping[str, str],
        values: Mapping[str, Any],
        origins: Mapping[str, str],
    ) -> "Settings":
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
    from sail_pipelines.config.team_file import environment_values, load_team_file

    values = load_team_file(path) if path.is_file() else {}
    origins = dict.fromkeys(values, path.name)
    overrides, variables = environment_values(env)
    return {**values, **overrides}, {**origins, **variables}
