"""Where a model came from: the data hash DVC gives, the git commit, the library versions, and
the versions of the project's own dependencies (its pyproject.toml)."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Mapping

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from sail_pipelines.errors import SailError

LIBRARIES = ("sail-pipelines", "scikit-learn", "pandas", "numpy", "joblib", "mlflow", "dvc")


def file_md5(path: Path) -> str:
    """The same digest DVC records for a file output."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_recorded_md5(data: Path) -> str | None:
    """The md5 in the file's .dvc pointer, if the file is tracked that way."""
    pointer = data.with_name(data.name + ".dvc")
    if not pointer.is_file():
        return None
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


# What the pipeline itself rewrites in a work tree: DVC's pointers and lock file record outputs,
# not code, so they do not make an image's code "dirty".
PIPELINE_OUTPUTS = (":!*.dvc", ":!dvc.lock")


def git_commit(root: Path, ignore: tuple[str, ...] = ()) -> tuple[str, bool]:
    """HEAD's commit and whether the work tree has uncommitted changes outside `ignore`
    (git pathspecs such as PIPELINE_OUTPUTS); 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *ignore],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(dirty)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def project_requirements(pyproject: Path) -> list[Requirement]:
    """The dependencies a generated project declares in its pyproject.toml, but sail-pipelines
    (the images bring it); none without the file."""
    if not pyproject.is_file():
        return []
    try:
        declared = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
        requirements = [Requirement(text) for text in declared]
    except (tomllib.TOMLDecodeError, InvalidRequirement, TypeError) as exc:
        raise SailError(
            f"{pyproject.name}: [project].dependencies is not a list of requirements: {exc}"
        ) from exc
    return [
        r
        for r in requirements
        if canonicalize_name(r.name) != "sail-pipelines"
        and (r.marker is None or r.marker.evaluate())
    ]


def project_versions(pyproject: Path) -> dict[str, str]:
    """{name: installed version} of the project's dependencies where this runs (in a training
    container: the image's, which `sail build` pinned to the host's)."""
    versions: dict[str, str] = {}
    for requirement in project_requirements(pyproject):
        try:
            versions[canonicalize_name(requirement.name)] = importlib_metadata.version(
                requirement.name
            )
        except importlib_metadata.PackageNotFoundError as exc:
            raise SailError(
                f"{requirement.name} (a dependency in {pyproject.name}) is not installed here: "
                f"pip install it, or run `sail build` again for the images"
            ) from exc
    return versions


@dataclass(frozen=True)
class Provenance:
    """What a bundle records about its origin, computed where the data and .git are visible.

    A training container sees neither the raw data (it holds the test rows) nor .git, so the
    host computes this and hands it over in the environment.
    """

    data_hash: str
    git_commit: str
    git_dirty: bool

    @classmethod
    def of(cls, root: Path, raw_data: Path) -> "Provenance":
        commit, dirty = git_commit(root)
        return cls(file_md5(raw_data), commit, dirty)

    def to_env(self) -> dict[str, str]:
        return {
            "SAIL_DATA_HASH": self.data_hash,
            "SAIL_GIT_COMMIT": self.git_commit,
            "SAIL_GIT_DIRTY": str(int(self.git_dirty)),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Provenance | None":
        if not env.get("SAIL_DATA_HASH"):
            return None
        return cls(
            env["SAIL_DATA_HASH"],
            env.get("SAIL_GIT_COMMIT", "unknown"),
            env.get("SAIL_GIT_DIRTY") == "1",
        )
