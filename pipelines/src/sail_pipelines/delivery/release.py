"""The inference image behind an environment: `<repo>/inference:staging` and `:production`.

Moving the tag is how deploy, promotion and rollback say which image an environment runs.
With a registry configured the moved tag is pushed too, so every host and cluster sees it.
"""

from __future__ import annotations

from typing import Any

from sail_pipelines.errors import SailError

ENVIRONMENTS = ("staging", "production")
IMAGE_TAG = "sail.image"  # model-version tag: the inference image `sail package` built for the version


def split_ref(ref: str) -> tuple[str, str]:
    """(repository, tag) of an image ref; the registry's port is not a tag."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repository, tag


def get_image(client: Any, ref: str, pull: bool) -> Any:
    """The local image of `ref`, pulled from the registry first when allowed and missing here."""
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        if not pull:
            raise SailError(f"image {ref} is not on this host") from None
    except docker.errors.APIError as exc:
        raise SailError(f"Docker could not look up {ref}: {exc.explanation or exc}") from None
    try:
        return client.images.pull(*split_ref(ref))
    except docker.errors.APIError as exc:
        raise SailError(f"image {ref} is neither on this host nor pullable: {exc.explanation or exc}") from None


def image_id(client: Any, ref: str) -> str | None:
    """The id a tag names on this host, or None."""
    import docker

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def push(client: Any, ref: str) -> None:
    repository, tag = split_ref(ref)
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise SailError(f"pushing {ref} failed: {chunk['error'].strip()}")


def move_tag(client: Any, image: Any, target: str, push_it: bool) -> dict[str, Any]:
    """Point `target` at `image` (and push it); on a failed push the local tag goes back where it was."""
    import docker

    repository, tag = split_ref(target)
    try:
        before = image_id(client, target)
        if before == image.id:
            return {"tag": target, "image_id": image.id, "moved": False, "pushed": False}
        image.tag(repository, tag)
    except docker.errors.APIError as exc:
        raise SailError(f"tagging {target} failed: {exc.explanation or exc}") from None
    if push_it:
        try:
            push(client, target)
        except (SailError, docker.errors.APIError) as exc:
            if before:
                client.images.get(before).tag(repository, tag)
            else:
                client.images.remove(target, noprune=True)
            reason = exc.explanation if isinstance(exc, docker.errors.APIError) else exc
            raise SailError(f"{reason}; {target} was left where it was") from None
    return {"tag": target, "image_id": image.id, "moved": before != image.id, "pushed": push_it}


def pinned_ref(image: Any, repository: str) -> str:
    """An immutable name for a cluster to pull: the registry digest, else the versioned tag."""
    digests = sorted(d for d in image.attrs.get("RepoDigests") or [] if d.startswith(repository + "@"))
    if digests:
        return digests[0]
    tags = sorted(t for t in image.tags if split_ref(t)[0] == repository and split_ref(t)[1] not in ENVIRONMENTS)
    if tags:
        return tags[0]
    raise SailError(f"image {image.id[:19]} has no digest or versioned tag in {repository}: run `sail package` and `sail publish`")
