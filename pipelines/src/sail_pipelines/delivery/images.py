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

SIDES = ("train", "metric", "inference")


def repository_name(registered_model: str) -> str:
    """A Docker repository component from the registered model name (lowercase, '-' for '_')."""
    name = re.sub(r"[^a-z0-9]+", "-", registered_model.lower()).strip("-")
    return name or "model"


def code_tag(commit: str, dirty: bool) -> str:
    """The commit, shortened; a dirty work tree is marked so its image is never mistaken for the commit's."""
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
