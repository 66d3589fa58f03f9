"""AWS (or an S3-compatible store) for team mode: one identity for every step.

boto3 sessions come from the team settings (profile, region, a role assumed through STS). DVC's
s3fs and MLflow's S3 artifact client read only the environment, so `environment()` hands the
same identity to them: the role's temporary credentials, the profile, the region, and
MLFLOW_S3_ENDPOINT_URL for an S3-compatible store. Nothing here is written to disk.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
from typing import Any

from sail_pipelines.config import AwsSettings
from sail_pipelines.errors import SailError

# Short connect/read timeouts and few retries: an unreachable store should fail in seconds,
# and `sail push` has its own retries with backoff around the whole transfer.
QUICK = {
    "connect_timeout": 5,
    "read_timeout": 20,
    "retries": {"max_attempts": 2, "mode": "standard"},
}
# an S3-compatible store serves STS at the same address (MinIO, Ceph)
ENDPOINT_SERVICES = ("s3", "sts")
DEFAULT_ENDPOINT_REGION = "us-east-1"  # what MinIO and Ceph assume when no region is configured


def reason(exc: BaseException) -> str:
    """One line from a boto3/botocore error, naming the AWS error code when there is one."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error.get("Code"):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (
            f"{error['Code']}{f' (HTTP {status})' if status else ''}: "
            f"{error.get('Message') or 'no message'}"
        )
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def session_name() -> str:
    """Who assumed the role, as CloudTrail shows it: sail-<user>."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return re.sub(r"[^\w+=,.@-]", "-", f"sail-{user}")[:64]


def _base_session(aws: AwsSettings) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.Session(profile_name=aws.profile, region_name=aws.region)
    except BotoCoreError as exc:
        raise SailError(f"AWS profile {aws.profile!r}: {reason(exc)}") from exc


def _region(aws: AwsSettings, boto_session: Any) -> str | None:
    """The configured region; for an S3-compatible endpoint without one, DEFAULT_ENDPOINT_REGION."""
    return (
        aws.region
        or boto_session.region_name
        or (DEFAULT_ENDPOINT_REGION if aws.endpoint_url else None)
    )


@functools.cache
def assumed_credentials(aws: AwsSettings) -> dict[str, str]:
    """Temporary credentials of aws.role_arn, assumed once per process with the base identity."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    base = _base_session(aws)
    sts = base.client(
        "sts", endpoint_url=aws.endpoint_url, region_name=_region(aws, base), config=Config(**QUICK)
    )
    try:
        creds = sts.assume_role(RoleArn=aws.role_arn, RoleSessionName=session_name())["Credentials"]
    except (BotoCoreError, ClientError) as exc:
        raise SailError(f"AWS: cannot assume role {aws.role_arn}: {reason(exc)}") from exc
    return {
        "key": creds["AccessKeyId"],
        "secret": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
    }


def session(aws: AwsSettings) -> Any:
    """A boto3 session with the team identity: the role's when one is set, else the profile's or
    boto3's default."""
    if not aws.role_arn:
        return _base_session(aws)
    import boto3

    creds = assumed_credentials(aws)
    return boto3.Session(
        aws_access_key_id=creds["key"],
        aws_secret_access_key=creds["secret"],
        aws_session_token=creds["token"],
        region_name=aws.region or _base_session(aws).region_name,
    )


def client(aws: AwsSettings, service: str, region: str | None = None) -> Any:
    """A boto3 client for `service`; S3 and STS go to the S3-compatible endpoint when one is set."""
    from botocore.config import Config

    endpoint = aws.endpoint_url if service in ENDPOINT_SERVICES else None
    chosen = session(aws)
    region = region or (_region(aws, chosen) if endpoint else None)
    return chosen.client(service, endpoint_url=endpoint, region_name=region, config=Config(**QUICK))


def environment(aws: AwsSettings) -> dict[str, str]:
    """Variables that give DVC, MLflow (and containers) the team identity and endpoint."""
    env: dict[str, str] = {}
    if aws.region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = aws.region
    if aws.role_arn:
        creds = assumed_credentials(aws)
        env.update(
            AWS_ACCESS_KEY_ID=creds["key"],
            AWS_SECRET_ACCESS_KEY=creds["secret"],
            AWS_SESSION_TOKEN=creds["token"],
        )
    elif aws.profile:
        env["AWS_PROFILE"] = aws.profile
    if aws.endpoint_url:
        # MLflow writes artifacts itself when its server does not proxy them (mlflow server
        # --no-serve-artifacts --default-artifact-root s3://...): it needs the endpoint too.
        env["MLFLOW_S3_ENDPOINT_URL"] = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or aws.endpoint_url
    return env


def apply(aws: AwsSettings) -> None:
    """Put environment() into this process, for the libraries and subprocesses that read only
    env."""
    env = environment(aws)
    if aws.role_arn:
        # the role's credentials, not the profile's, from here on
        os.environ.pop("AWS_PROFILE", None)
    os.environ.update(env)
