"""`sail publish`: push the project's images to the team registry, and sign the inference image.

The refs already carry the registry prefix when one is configured at build time; images built
before a registry was set are tagged for it here. Digests are recorded so a deployment can
pin exactly what was pushed. The inference image's manifest digest is signed with the project's
signing key and the signature stored beside it (integrity/imagesign.py): `sail deploy` and
`sail promote` run nothing unsigned.
"""

from __future__ import annotations

from typing import Any, Callable

import docker

from sail_pipelines.clients import containers, registry
from sail_pipelines.clients.build import recorded
from sail_pipelines.clients.images import ImageRef
from sail_pipelines.config import ProjectPaths, Settings, stores
from sail_pipelines.delivery import release
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json, write_json
from sail_pipelines.integrity import imagesign
from sail_pipelines.integrity.signing import SignKey


def push(client: Any, ref: str, auth: dict[str, str] | None) -> str:
    """Push one ref; return its digest. The push stream reports errors in-band, not as
    exceptions."""
    parsed = ImageRef.parse(ref)
    digest = None
    stream = client.images.push(
        parsed.repository, parsed.version, stream=True, decode=True, auth_config=auth
    )
    for chunk in stream:
        if "error" in chunk:
            raise SailError(f"pushing {ref} failed: {chunk['error'].strip()}")
        digest = chunk.get("aux", {}).get("Digest", digest)
    if digest is None:
        raise SailError(f"pushing {ref} reported no digest")
    return digest


def run(
    paths: ProjectPaths,
    settings: Settings,
    key: SignKey,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    stores.require(paths, settings, "publish")
    if not settings.registry:
        raise SailError("no image registry configured: set SAIL_REGISTRY (e.g. 127.0.0.1:5000)")
    built = recorded(paths)
    refs = [built[side] for side in ("train", "metric") if side in built]
    package = paths.reports / "package.json"
    inference = read_json(package)["image"] if package.is_file() else None
    if inference:
        refs.append(inference)
    client = containers.docker_client()
    auth = registry.login(client, settings)
    pushed = {}
    for ref in refs:
        target = release.in_registry(ref, settings.registry)
        if target != ref:
            try:
                client.images.get(ref).tag(target)
            except docker.errors.ImageNotFound as exc:
                raise SailError(
                    f"image {ref} is not on this machine: run `sail build` / `sail package` first"
                ) from exc
        say(f"pushing {target}")
        pushed[target] = push(client, target, auth)
    signatures = {}
    if inference:
        target = release.in_registry(inference, settings.registry)
        say(f"signing {target}@{pushed[target]} (key id {key.key_id})")
        signatures[target] = imagesign.sign(settings, target, pushed[target], key)
    result = {
        "registry": settings.registry,
        "images": pushed,
        "signatures": signatures,
        "key_id": key.key_id,
    }
    write_json(paths.reports / "publish.json", result)
    return result
