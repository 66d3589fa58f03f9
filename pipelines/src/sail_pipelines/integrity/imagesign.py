"""Image signatures, stored in the registry next to the image the way cosign stores them.

`sail publish` signs the manifest digest of the inference image it pushed. The payload is
cosign's "simple signing" JSON, naming the repository and the digest. It is the one layer of an
OCI manifest tagged `sha256-<hex>.sig` in the same repository, and the signature (base64) sits
in that layer's `dev.cosignproject.cosign/signature` annotation.

`sail deploy` and `sail promote` look up in the registry the digest the tag points at, fetch that
digest's signature tag, and check three things: the payload names this digest in this
repository, the project's key signed it, and the signature verifies. Docker then runs the image
by that digest, so what runs is what was checked. OCI Registry As Storage (oras) does the registry
API, with the same login as `sail publish`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from sail_pipelines.clients import registry
from sail_pipelines.clients.images import ImageRef
from sail_pipelines.config import Settings
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.signing import SignKey, VerifyKey

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
KEY_ID, ALGORITHM = "dev.sail-pipelines.key-id", "dev.sail-pipelines.algorithm"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
IMAGE_TYPE = "cosign container image signature"


class ImageRejected(SailError):
    """The image is unsigned, signed for another digest or repository, or by another key."""


def signature_tag(digest: str) -> str:
    """cosign's tag for the signature of `digest`: sha256:abc… → sha256-abc….sig"""
    return digest.replace(":", "-") + ".sig"


def payload(repository: str, digest: str) -> bytes:
    """cosign's simple-signing payload: what is signed is which manifest, in which repository."""
    body = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": IMAGE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _blob(data: bytes, media_type: str, **annotations: str) -> dict[str, Any]:
    layer = {
        "mediaType": media_type,
        "size": len(data),
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
    }
    return {**layer, "annotations": annotations} if annotations else layer


def _client(settings: Settings, ref: ImageRef) -> Any:
    """An oras registry client for the image's registry, logged in as `sail publish` is: HTTP
    basic auth where the registry asks for it (htpasswd, ECR), else a token obtained with the
    same credentials (or an anonymous one)."""
    import oras.provider
    import requests

    creds = registry.credentials(settings)
    backend = "token"
    if creds is not None:
        try:
            challenge = requests.get(
                f"{registry.base_url(ref.registry)}/v2/", timeout=registry.TIMEOUT
            )
        except requests.RequestException as exc:
            raise SailError(
                f"registry {ref.registry} is unreachable: {type(exc).__name__}"
            ) from exc
        if challenge.headers.get("Www-Authenticate", "").lower().startswith("basic"):
            backend = "basic"
    client = oras.provider.Registry(
        hostname=ref.registry, insecure=registry.is_loopback(ref.registry), auth_backend=backend
    )
    if creds is not None:
        client.auth.set_basic_auth(creds.username, creds.password)
    return client


def _container(ref: ImageRef, tag: str) -> Any:
    import oras.container

    return oras.container.Container(f"{ref.path}:{tag}", registry=ref.registry)


def _request(client: Any, url: str, method: str = "GET", **kwargs: Any) -> Any:
    """One registry call; failures become one line, never a password or a traceback."""
    import requests

    try:
        return client.do_request(url, method, **kwargs)
    except (requests.RequestException, ValueError) as exc:
        raise SailError(
            f"registry call {method} {url} failed: {str(exc).splitlines()[0][:200]}"
        ) from exc


def sign(settings: Settings, ref: str, digest: str, key: SignKey) -> str:
    """Store the signature of `digest` (pushed as `ref`) in its repository; return the signature
    tag."""
    image = ImageRef.parse(ref)
    client = _client(settings, image)
    signed = payload(image.repository, digest)
    layer = _blob(
        signed,
        PAYLOAD_TYPE,
        **{
            SIGNATURE: base64.b64encode(bytes.fromhex(key.sign(signed))).decode(),
            KEY_ID: key.key_id,
            ALGORITHM: key.algorithm,
        },
    )
    config = _blob(b"{}", CONFIG_TYPE)
    tag = signature_tag(digest)
    target = _container(image, tag)
    with tempfile.TemporaryDirectory() as scratch:
        for blob, data in ((layer, signed), (config, b"{}")):
            path = Path(scratch) / blob["digest"].replace(":", "-")
            path.write_bytes(data)
            answer = client.upload_blob(str(path), target, blob)
            if answer.status_code not in (200, 201, 202):
                raise SailError(
                    f"storing the signature of {ref} failed: HTTP {answer.status_code} "
                    f"{answer.text[:200]}"
                )
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": [layer]}
    answer = client.upload_manifest(manifest, target)
    if answer.status_code not in (200, 201):
        raise SailError(
            f"storing the signature of {ref} failed: HTTP {answer.status_code} {answer.text[:200]}"
        )
    return f"{image.repository}:{tag}"


def registry_digest(docker_client: Any, settings: Settings, ref: str) -> str:
    """The digest the registry holds for `ref` now (not what a local tag says)."""
    import docker

    try:
        return docker_client.images.get_registry_data(
            ref, auth_config=registry.login(docker_client, settings)
        ).id
    except docker.errors.APIError as exc:
        raise ImageRejected(
            f"{ref} is not in the registry ({exc.explanation or exc}): run `sail publish`"
        ) from exc


def verify(docker_client: Any, settings: Settings, ref: str, key: VerifyKey) -> str:
    """The registry digest of `ref` once its signature checks out; ImageRejected otherwise."""
    image = ImageRef.parse(ref)
    digest = image.digest or registry_digest(docker_client, settings, ref)
    client = _client(settings, image)
    where = _container(image, signature_tag(digest))
    answer = _request(
        client, f"{client.prefix}://{where.manifest_url()}", headers={"Accept": MANIFEST_TYPE}
    )
    if answer.status_code == 404:
        raise ImageRejected(
            f"{ref} ({digest}) is not signed: no {signature_tag(digest)} in {image.repository}; "
            "only images that `sail publish` signed are deployed"
        )
    if answer.status_code != 200:
        raise SailError(f"reading the signature of {ref} failed: HTTP {answer.status_code}")
    try:
        [layer] = answer.json()["layers"]
        blob = _request(client, f"{client.prefix}://{where.get_blob_url(layer['digest'])}").content
        annotations = layer.get("annotations") or {}
        signed = json.loads(blob)["critical"]
        signature = base64.b64decode(annotations.get(SIGNATURE, ""), validate=True).hex()
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageRejected(
            f"the signature stored for {ref} ({digest}) is unreadable; refusing it"
        ) from exc
    if hashlib.sha256(blob).hexdigest() != layer["digest"].removeprefix("sha256:"):
        raise ImageRejected(
            f"the signature payload of {ref} does not match its digest; refusing it"
        )
    if annotations.get(ALGORITHM) != key.algorithm or not key.verify(blob, signature):
        raise ImageRejected(
            f"{ref} ({digest}) is signed with {annotations.get(ALGORITHM)} key id "
            f"{annotations.get(KEY_ID)}, this key is {key.algorithm} key id {key.key_id}: "
            "the signature does not check out; refusing it"
        )
    named = (
        signed.get("image", {}).get("docker-manifest-digest"),
        signed.get("identity", {}).get("docker-reference"),
    )
    if named != (digest, image.repository):
        raise ImageRejected(
            f"{ref} is {digest} in {image.repository}, but its signature is for {named[0]} in "
            f"{named[1]}: a re-tagged image; refusing it"
        )
    return digest
