"""Shared fixtures: baking the template and running `sail` in the baked project as a user would."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

import docker

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cookiecutter-sail"
TEST_KEY = "test-signing-key-7d41c0a9e2"
BIN = str(Path(sys.executable).parent)
# Real S3 (moto), MLflow server and registry fixtures for the team-mode tests.
pytest_plugins = ("servers",)


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """A git identity for the post-gen commit, and no signing or tracking settings leaking in."""
    gitconfig = tmp_path_factory.mktemp("home") / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = SAIL Tests\n\temail = tests@example.invalid\n[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
        mp.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
        for name in ("SAIL_SIGNING_KEY", "SAIL_ALLOW_DEV_KEY", "MLFLOW_TRACKING_URI", "SAIL_DVC_REMOTE_URL", "SAIL_REGISTRY", "SAIL_RUNTIME"):
            mp.delenv(name, raising=False)
        # Team-mode settings of the machine (AWS identity, S3 endpoint, registry login) stay out too.
        for name in [n for n in os.environ if n.startswith("AWS_")] + [
            "SAIL_S3_ENDPOINT_URL", "SAIL_AWS_ROLE_ARN", "SAIL_REGISTRY_USERNAME", "SAIL_REGISTRY_PASSWORD",
            "SAIL_RETRY_ATTEMPTS", "SAIL_RETRY_BACKOFF_SECONDS", "MLFLOW_S3_ENDPOINT_URL",
        ]:
            mp.delenv(name, raising=False)
        yield


def bake(output_dir: Path, **answers: str) -> Path:
    return Path(cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)))


def sail(project: Path, *args: str, key: str | None = TEST_KEY, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run the real `sail` command in a project; the test decides what the exit code must be."""
    full_env = dict(os.environ, **env)
    if key:
        full_env["SAIL_SIGNING_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "sail_pipelines.cli", "--project", str(project), *args],
        env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def dvc(project: Path, *args: str) -> None:
    """DVC as a user runs it between pipeline runs (e.g. `dvc add` after editing the data)."""
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, check=True, capture_output=True)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def base_image():
    """A prepared Docker machine (docker/prepare-machine: daemon, base image, local registry);
    the base image to build from. Without Docker the container tests skip, except under CI.
    The images the session builds are removed at its end, so repeated runs do not fill the disk."""
    result = subprocess.run([str(ROOT / "docker" / "prepare-machine")], capture_output=True, text=True)
    if result.returncode != 0:
        message = f"Docker is not available: {(result.stderr.strip().splitlines() or ['?'])[-1]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    client = docker.from_env()
    existing = {image.id for image in client.images.list(all=True)}
    yield result.stdout.strip().splitlines()[-1].partition("=")[2]
    # Tagged images first: removing one also removes the build steps beneath it that no other image needs.
    for image in client.images.list() + client.images.list(all=True):
        if image.id not in existing:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory) -> Path:
    """A default project after one full `sail run` (read-only for the tests that use it)."""
    project = bake(tmp_path_factory.mktemp("baked"))
    ok(sail(project, "run"))
    return project


@pytest.fixture
def project_copy(pipeline_project, tmp_path) -> Path:
    """A private copy of the run project, for tests that tamper with it."""
    dest = tmp_path / pipeline_project.name
    shutil.copytree(pipeline_project, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def regression_project(tmp_path_factory) -> Path:
    """A regression project (its gate slices the test split by `sex`) after one full `sail run`
    (read-only for the tests that use it)."""
    baked = tmp_path_factory.mktemp("baked")
    project = bake(baked, project_name="Diabetes Progression", task="regression")
    ok(sail(project, "run"))
    return project


@pytest.fixture
def regression_copy(regression_project, tmp_path) -> Path:
    """A private copy of the run regression project, for tests that change it."""
    dest = tmp_path / regression_project.name
    shutil.copytree(regression_project, dest, symlinks=True)
    return dest
