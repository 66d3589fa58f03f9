"""The inference image behind an environment: `<repo>/inference:staging` and `:production`.

Moving the tag is how deploy, promotion and rollback say which image an environment runs.
With a registry configured the moved tag is pushed too, so every host and cluster sees it, and
an image is only taken from the registry once its signature checks out (`signed_image`).
"""

from __future__ import annotations

from typing import Any

from sail_pipelines.clients.images import ImageRef
from sail_pipelines.config import Settings
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import imagesign
from sail_pipelines.integrity.signing import VerifyKey

ENVIRONMENTS = ("staging", "production")
IMAGE_TAG = (
    "sail.image"  # model-version tag: the inference image `sail package` built for the version
)


def get_image(client: Any, ref: str, pull: bool) -> Any:
    """The local image of `ref`, pulled from the registry first when allowed and missing here."""
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound as exc:
        if not pull:
            raise SailError(f"image {ref} is not on this host") from exc
    except docker.errors.APIError as exc:
        raise SailError(f"Docker could not look up {ref}: {exc.explanation or exc}") from exc
    try:
        parsed = ImageRef.parse(ref)
        return client.images.pull(parsed.repository, parsed.version)
    except docker.errors.APIError as exc:
        raise SailError(
            f"image {ref} is neither on this host nor pullable: {exc.explanation or exc}"
        ) from exc


def in_registry(ref: str, registry: str) -> str:
    """The ref under the registry: `model/train:tag` → `registry/model/train:tag`."""
    prefix = registry.rstrip("/") + "/"
    return ref if ref.startswith(prefix) else prefix + ref


def signed_image(client: Any, settings: Settings, ref: str, key: VerifyKey) -> tuple[Any, str, str]:
    """(image, registry ref, digest): the signature checked in the registry, then the image
    pulled by the very digest that was checked."""
    ref = in_registry(ref, settings.registry or "")
    digest = imagesign.verify(client, settings, ref, key)
    return get_image(client, f"{ImageRef.parse(ref).repository}@{digest}", pull=True), ref, digest


def image_id(client: Any, ref: str) -> str | None:
    """The id a tag names on this host, or None."""
    import docker

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def push(client: Any, ref: str) -> None:
    parsed = ImageRef.parse(ref)
    for chunk in client.api.push(parsed.repository, tag=parsed.version, stream=True, decode=True):
        if "error" in chunk:
            raise SailError(f"pushing {ref} failed: {chunk['error'].strip()}")


def move_tag(client: Any, image: Any, target: str, push_it: bool) -> dict[str, Any]:
    """Point `target` at `image` (and push it); on a failed push the local tag goes back where it
    was."""
    import docker

    parsed = ImageRef.parse(target)
    repository, tag = parsed.repository, parsed.version
    try:
        before = image_id(client, target)
        if before == image.id:
            return {"tag": target, "image_id": image.id, "moved": False, "pushed": False}
        image.tag(repository, tag)
    except docker.errors.APIError as exc:
        raise SailError(f"tagging {target} failed: {exc.explanation or exc}") from exc
    if push_it:
        try:
            push(client, target)
        except (SailError, docker.errors.APIError) as exc:
            if before:
                client.images.get(before).tag(repository, tag)
            else:
                client.images.remove(target, noprune=True)
            reason = exc.explanation if isinstance(exc, docker.errors.APIError) else exc
            raise SailError(f"{reason}; {target} was left where it was") from exc
    return {"tag": target, "image_id": image.id, "moved": before != image.id, "pushed": push_it}


def pinned_ref(image: Any, repository: str) -> str:
    """An immutable name for a cluster to pull: the registry digest, else the versioned tag."""
    digests = sorted(
        d for d in image.attrs.get("RepoDigests") or [] if d.startswith(repository + "@")
    )
    if digests:
        return digests[0]
    refs = [ImageRef.parse(t) for t in image.tags]
    tags = sorted(
        str(r) for r in refs if r.repository == repository and r.version not in ENVIRONMENTS
    )
    if tags:
        return tags[0]
    raise SailError(
        f"image {image.id[:19]} has no digest or versioned tag in {repository}: run `sail "
        "package` and `sail publish`"
    )
