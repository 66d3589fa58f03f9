"""Where a model came from: the data hash DVC gives, the git commit, the library versions."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path

import yaml

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


def git_commit(root: Path) -> tuple[str, bool]:
    """HEAD's commit and whether the work tree has uncommitted changes ('unknown' outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True
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
