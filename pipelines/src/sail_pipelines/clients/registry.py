"""The team image registry: Amazon ECR through a boto3 token, or any OCI registry by host[:port].

`login()` logs the Docker daemon in through the docker SDK, which keeps the credentials in the
client's memory (never ~/.docker/config.json), and returns the auth_config for pushes.
`probe()` is the `sail doctor` check: GET /v2/, and a real login when the registry asks for one.
The password comes from SAIL_REGISTRY_PASSWORD (or ECR's token) and never enters a message.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from sail_pipelines.clients import aws, containers
from sail_pipelines.config import Settings
from sail_pipelines.errors import SailError

ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
TIMEOUT = 10


@dataclass(frozen=True)
class Credentials:
    server: str  # what `docker login` is given
    username: str
    password: str = field(repr=False)

    def scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def host(registry: str) -> str:
    return registry.split("/", 1)[0]


def is_loopback(hostport: str) -> bool:
    name = hostport[1:].split("]", 1)[0] if hostport.startswith("[") else hostport.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(registry: str) -> str:
    """https, except on loopback where Docker itself talks plain http (127.0.0.0/8 is an insecure
    registry by default)."""
    return f"{'http' if is_loopback(host(registry)) else 'https'}://{host(registry)}"


def credentials(settings: Settings) -> Credentials | None:
    """Who to log in as: an ECR token for an ECR host, else the username and password from the
    settings; None for an anonymous registry."""
    if not settings.registry:
        return None
    name = host(settings.registry)
    ecr = ECR_HOST.match(name)
    if ecr:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = aws.client(settings.aws, "ecr", region=ecr["region"]).get_authorization_token(
                registryIds=[ecr["account"]]
            )
            data = reply["authorizationData"][0]
        except (BotoCoreError, ClientError) as exc:
            raise SailError(f"registry {name}: no ECR login token: {aws.reason(exc)}") from exc
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return Credentials(f"https://{name}", user, password)
    if settings.registry_password and not settings.registry_username:
        raise SailError(
            f"registry {name}: SAIL_REGISTRY_PASSWORD is set but no user name (registry.username "
            "or SAIL_REGISTRY_USERNAME)"
        )
    if settings.registry_username and not settings.registry_password:
        raise SailError(
            f"registry {name}: user {settings.registry_username!r} is set but "
            "SAIL_REGISTRY_PASSWORD is not"
        )
    if not settings.registry_username:
        return None
    return Credentials(name, settings.registry_username, settings.registry_password or "")


def login(docker_client: Any, settings: Settings) -> dict[str, str] | None:
    """Log the daemon in to the registry; the auth_config to push with, or None when anonymous."""
    import docker

    creds = credentials(settings)
    if creds is None:
        return None
    try:
        docker_client.login(
            username=creds.username, password=creds.password, registry=creds.server, reauth=True
        )
    except docker.errors.APIError as exc:
        detail = exc.explanation or str(exc)
        # The cause is left out: the daemon's message may quote the password.
        raise SailError(
            f"registry {host(settings.registry or '')}: login as {creds.username!r} refused: "
            f"{creds.scrub(str(detail))}"
        ) from None
    return {"username": creds.username, "password": creds.password, "serveraddress": creds.server}


def probe(settings: Settings) -> str:
    """What `sail doctor` says about the registry; SailError when pushing to it would fail."""
    import requests

    name = host(settings.registry or "")
    url = f"{base_url(settings.registry or '')}/v2/"
    try:
        answer = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise SailError(f"{name}: cannot reach {url}: {type(exc).__name__}") from exc
    if answer.status_code not in (200, 401):
        raise SailError(f"{name}: GET {url} answered HTTP {answer.status_code}, not a registry API")
    creds = credentials(settings)
    if creds is None:
        if answer.status_code == 401:
            raise SailError(
                f"{name} asks for credentials (GET /v2/ 401): set registry.username and "
                "SAIL_REGISTRY_PASSWORD"
            )
        return f"{name} reachable at {url}, no login needed"
    login(containers.docker_client(), settings)
    kind = "ECR token" if ECR_HOST.match(name) else f"user {creds.username!r}"
    return f"{name} reachable at {url}, docker login accepted ({kind})"
