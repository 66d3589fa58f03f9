"""Names of a project's three images: one repository per side, tags from the commit.

    <registry>/<model>/train:<commit12>
    <registry>/<model>/metric:<commit12>
    <registry>/<model>/inference:<commit12>-v<model version>
    <registry>/<model>/inference:<environment>   (staging, production: moved by deploy/promote)

Without a registry the names stay local (no `<registry>/` prefix). The image is the deployable
artifact, so the inference tag names both the code and the model it embeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sail_pipelines.errors import SailError

SIDES = ("train", "metric", "inference")


def repository_name(registered_model: str) -> str:
    """A Docker repository component from the registered model name (lowercase, '-' for '_')."""
    name = re.sub(r"[^a-z0-9]+", "-", registered_model.lower()).strip("-")
    return name or "model"


def code_tag(commit: str, dirty: bool) -> str:
    """The commit, shortened; a dirty work tree is marked so its image is never mistaken for the
    commit's."""
    tag = commit[:12] if commit and commit != "unknown" else "nocommit"
    return f"{tag}-dirty" if dirty else tag


@dataclass(frozen=True)
class ImageNames:
    registry: str | None
    model: str  # repository_name() of the registered model
    code: str  # code_tag()

    def repository(self, side: str) -> str:
        if side not in SIDES:
            raise ValueError(f"unknown image side {side!r}")
        prefix = f"{self.registry.rstrip('/')}/" if self.registry else ""
        return f"{prefix}{self.model}/{side}"

    @property
    def train(self) -> str:
        return f"{self.repository('train')}:{self.code}"

    @property
    def metric(self) -> str:
        return f"{self.repository('metric')}:{self.code}"

    def inference(self, version: str) -> str:
        return f"{self.repository('inference')}:{self.code}-v{version}"

    def environment(self, environment: str) -> str:
        """The moving tag of the inference image deployed to an environment."""
        return f"{self.repository('inference')}:{environment}"


@dataclass(frozen=True)
class ImageRef:
    """An image reference as Docker reads it (its SDK's parser, not a split on ':'): a port in the
    registry host is not a tag, and `repo@sha256:…` is a digest."""

    repository: str  # as written, registry host included: 127.0.0.1:5000/model/inference
    tag: str | None = None
    digest: str | None = None  # sha256:<hex>

    @classmethod
    def parse(cls, ref: str) -> "ImageRef":
        from docker.errors import InvalidRepository
        from docker.utils import parse_repository_tag

        name, version = parse_repository_tag(ref)
        is_digest = bool(version) and version.startswith("sha256:")
        tag, digest = (None, version) if is_digest else (version, None)
        if digest and ":" in name.rsplit("/", 1)[-1]:  # repo:tag@sha256:… names both
            name, tag = parse_repository_tag(name)
        parsed = cls(name, tag, digest)
        try:
            _ = parsed.registry  # raises on a malformed name
        except InvalidRepository as exc:
            raise SailError(f"{ref!r} is not an image reference: {exc}") from exc
        return parsed

    @property
    def registry(self) -> str:
        """The registry host (and port); docker.io when the name has none."""
        from docker.auth import resolve_repository_name

        return resolve_repository_name(self.repository)[0]

    @property
    def path(self) -> str:
        """The repository inside its registry: model/inference."""
        from docker.auth import resolve_repository_name

        return resolve_repository_name(self.repository)[1]

    @property
    def version(self) -> str:
        """What Docker's pull and push take as the tag: the digest, else the tag, else latest."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        return self.repository + tag + (f"@{self.digest}" if self.digest else "")
