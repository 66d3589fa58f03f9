"""Shared fixtures: baking the template and running `sail` in the baked project as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import docker
import pytest
from cookiecutter.main import cookiecutter

from sail_pipelines.integrity import signing

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cookiecutter-sail"


def _run_keys() -> dict[str, str]:
    """Key pairs made once per test run: bundles and audit. The xdist workers inherit the
    controller's environment, so a project one worker signed (`public_project`) verifies on
    another; `isolated_env` then takes the variable out of the tests' environment."""
    if SESSION_KEYS not in os.environ:
        keys = {name: signing.generate().text() for name in ("bundle", "audit")}
        os.environ[SESSION_KEYS] = json.dumps(keys)
    return json.loads(os.environ[SESSION_KEYS])


SESSION_KEYS = "SAIL_TEST_RUN_KEYS"
_KEYS = _run_keys()
TEST_KEY = _KEYS["bundle"]  # signs bundles; TEST_VERIFY_KEY verifies them
TEST_VERIFY_KEY = signing.private_key(TEST_KEY, "key").verify_key.text()
TEST_AUDIT_KEY = _KEYS["audit"]
BIN = str(Path(sys.executable).parent)
# The rule for CI; real S3 (moto), MLflow server and registry fixtures for the team-mode tests.
pytest_plugins = ("ci_rules", "servers")
# Settings of the CI running the suite that the code reads (approver, job summary, pull request,
# links, provenance handed to containers): a test sets what it needs, nothing leaks in.
CI_VARIABLES = (
    "BUILD_USER_ID",
    "BUILD_USER",
    "BUILD_URL",
    "CHANGE_ID",
    "GITHUB_ACTOR",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_EVENT_PATH",
    "GITHUB_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_API_URL",
    "GITHUB_RUN_ID",
    "GITHUB_SERVER_URL",
    "SAIL_PR_NUMBER",
    "SAIL_DATA_HASH",
    "SAIL_GIT_COMMIT",
    "SAIL_GIT_DIRTY",
    "SAIL_WHEEL",
    "SAIL_HOST",
    "SAIL_PORT",
    "SAIL_DEBUG",
    "SAIL_ACCESS_LOG",
)
STORE_RULE_VARIABLES = (
    "CI",
    "GITHUB_ACTIONS",
    "JENKINS_URL",
    "GITHUB_WORKSPACE",
    "WORKSPACE",
    "SAIL_ALLOW_EPHEMERAL",
)
# Seconds for docker/prepare-machine on a prepared machine (`make test` runs it before pytest),
# below pytest-timeout's 900 so that it, not pytest-timeout, reports a hang.
PREPARE_TIMEOUT = 600
REVISION = "org.opencontainers.image.revision"


# Marks whose tests share the machine (Docker daemon, images, the registry on 127.0.0.1:5000, act):
# under pytest-xdist each group of them runs on one worker, one after another: group "docker"
# unless a module names its own (the modules that run the pipeline's steps in containers and
# through act are group "containers": they use other model names, images, registry repositories
# and ports than the deploy tests, so the two groups run side by side).
SERIAL_MARKS = ("docker", "workflows")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Put the tests marked docker or workflows that name no group into xdist_group "docker" and,
    on an xdist worker, first: those groups are the longest units of work, so they start at once.

    pytest-xdist 3.8 names a test's group by appending "@group" to `item._nodeid`, which
    pytest 9 no longer reads (a node's id lives in `_id`), so every test was spread over
    both workers; after xdist's hook has run, the group is appended here where it is missing."""
    serial = [item for item in items if any(item.get_closest_marker(m) for m in SERIAL_MARKS)]
    for item in serial:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("docker"))
    if hasattr(config, "workerinput"):
        chosen = set(serial)
        items[:] = serial + [item for item in items if item not in chosen]
    result = yield
    if getattr(config.option, "loadgroup", False):
        from _pytest.nodeid import NodeId

        for item in items:
            groups = sorted(
                {
                    str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")
                }
            )
            suffix = "@" + "_".join(groups)  # a parameter id may hold an "@" of its own
            if groups and not item.nodeid.endswith(suffix):
                item._id = NodeId.parse(item.nodeid + suffix)
    return result


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """A git identity for the post-gen commit, and no signing or tracking settings leaking in."""
    gitconfig = tmp_path_factory.mktemp("home") / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = SAIL Tests\n\temail = tests@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
        mp.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
        for name in (
            "SAIL_SIGNING_KEY",
            "SAIL_VERIFY_KEY",
            "SAIL_AUDIT_KEY",
            "SAIL_AUDIT_VERIFY_KEY",
            "SAIL_ALLOW_DEV_KEY",
            "MLFLOW_TRACKING_URI",
            "SAIL_DVC_REMOTE_URL",
            "SAIL_REGISTRY",
            "SAIL_RUNTIME",
            SESSION_KEYS,  # read at import; no private key reaches a `sail` the tests start
        ):
            mp.delenv(name, raising=False)
        # Team-mode settings of the machine (AWS identity, S3 endpoint, registry login) stay
        # out too.
        for name in [n for n in os.environ if n.startswith("AWS_")] + [
            "SAIL_S3_ENDPOINT_URL",
            "SAIL_AWS_ROLE_ARN",
            "SAIL_REGISTRY_USERNAME",
            "SAIL_REGISTRY_PASSWORD",
            "SAIL_RETRY_ATTEMPTS",
            "SAIL_RETRY_BACKOFF_SECONDS",
            "MLFLOW_S3_ENDPOINT_URL",
            "SAIL_SEARCH_STORAGE",
        ]:
            mp.delenv(name, raising=False)
        # The markers of the CI running the suite: the `sail` the tests start must not refuse the
        # embedded stores (config/stores.py); the tests of that rule set them. ci_rules.py read
        # CI for its own skip rule when it loaded.
        for name in (*CI_VARIABLES, *STORE_RULE_VARIABLES):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def in_process_side_effects():
    """Undo what an in-process gate or MLflow store leaves behind for the next test.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI (for subprocesses), and creating a
    SQLite store runs alembic's fileConfig, which disables every logger that exists at the time.
    """
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    import logging

    import mlflow

    if os.environ.get("MLFLOW_TRACKING_URI") != tracking:
        mlflow.set_tracking_uri(tracking)
        if tracking is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.name.startswith("sail_pipelines"):
            logger.disabled = False


def bake(output_dir: Path, **answers: str) -> Path:
    return Path(
        cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)
        )
    )


def key_env(key: str | None) -> dict[str, str]:
    """The variables `sail` gets for a signing key: it, its public half (for an Ed25519 key) and
    the session's audit key."""
    if not key:
        return {}
    env = {"SAIL_SIGNING_KEY": key, "SAIL_AUDIT_KEY": TEST_AUDIT_KEY}
    if signing.looks_like_pem(key):
        env["SAIL_VERIFY_KEY"] = signing.private_key(key, "key").verify_key.text()
    return env


def sail(
    project: Path, *args: str, key: str | None = TEST_KEY, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """Run the real `sail` command in a project; the test decides what the exit code must be."""
    full_env = {**os.environ, **key_env(key), **env}
    return subprocess.run(
        [sys.executable, "-m", "sail_pipelines.cli", "--project", str(project), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dvc(project: Path, *args: str) -> None:
    """DVC as a user runs it between pipeline runs (e.g. `dvc add` after editing the data)."""
    subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, check=True, capture_output=True
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}"
    )
    return result


def session_commits(root: Path) -> set[str]:
    """The commits (12 characters, as image tags and labels carry them) of every git repository
    under `root`: the projects this session baked."""
    commits: set[str] = set()
    for directory, subdirectories, _ in os.walk(root):
        if ".git" in subdirectories:
            log = subprocess.run(
                ["git", "-C", directory, "rev-list", "--all"], capture_output=True, text=True
            )
            commits |= {commit[:12] for commit in log.stdout.split()}
        subdirectories[:] = [d for d in subdirectories if d not in (".git", ".dvc")]
    return commits


@pytest.fixture(scope="session")
def base_image(tmp_path_factory):
    """A prepared Docker machine (docker/prepare-machine: daemon, base image, local registry);
    the base image to build from. Without Docker the container tests skip, except under CI.
    The images the session's projects built are removed at its end, so repeated runs do not fill
    the disk; those of other sessions on the same daemon (another CI executor) are left alone."""
    result = subprocess.run(
        [str(ROOT / "docker" / "prepare-machine")],
        capture_output=True,
        text=True,
        timeout=PREPARE_TIMEOUT,
    )
    if result.returncode != 0:
        from ci_rules import missing  # here, not at the top: pytest imports it first, as a plugin

        missing(f"Docker is not available: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    yield result.stdout.strip().splitlines()[-1].partition("=")[2]
    # `sail build` and `sail package` label each image with the commit it was built from.
    commits = session_commits(tmp_path_factory.getbasetemp())
    client = docker.from_env()
    # The listing's own labels, not an inspect per image: another worker's session may remove
    # its images between the listing and the inspect.
    for image in client.api.images():
        if (image.get("Labels") or {}).get(REVISION, "").removesuffix("-dirty") in commits:
            with contextlib.suppress(docker.errors.APIError):  # and the build steps only it needed
                client.images.remove(image["Id"], force=True)


def built_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], Path]) -> Path:
    """The project `build(folder)` makes, made once per test run: the xdist workers share it
    through a lock in their common temporary folder (each worker building its own cost one more
    `sail run` per worker). Read-only for the tests: copy it to change it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "shared-projects"
    root.mkdir(exist_ok=True)
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        ready = folder / "ready"
        if not ready.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            ready.write_text(str(build(folder)))
        return Path(ready.read_text())


def _run(project: Path) -> Path:
    ok(sail(project, "run"))
    return project


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory, worker_id) -> Path:
    """A default project after one full `sail run`, once per test run (read-only for the tests
    that use it)."""
    return built_once(tmp_path_factory, worker_id, "default", lambda folder: _run(bake(folder)))


@pytest.fixture(scope="session")
def packaged_project(pipeline_project, base_image, tmp_path_factory) -> Path:
    """A copy of the run project after `sail package`: the real inference image, built once per
    session (reports/package.json names it; MLflow version 1 records it). Copy it to change it."""
    project = tmp_path_factory.mktemp("packaged") / pipeline_project.name
    shutil.copytree(pipeline_project, project, symlinks=True)
    ok(sail(project, "package", SAIL_BASE_IMAGE=base_image, timeout=1500))
    return project


@pytest.fixture
def project_copy(pipeline_project, tmp_path) -> Path:
    """A private copy of the run project, for tests that tamper with it."""
    dest = tmp_path / pipeline_project.name
    shutil.copytree(pipeline_project, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def regression_project(tmp_path_factory, worker_id) -> Path:
    """A regression project (its gate slices the test split by `sex`) after one full `sail run`,
    once per test run (read-only for the tests that use it)."""

    def build(folder: Path) -> Path:
        return _run(bake(folder, project_name="Diabetes Progression", task="regression"))

    return built_once(tmp_path_factory, worker_id, "regression", build)


@pytest.fixture(scope="session")
def public_project(tmp_path_factory, worker_id):
    """name -> a project baked around that public table (datasets.PUBLIC) after one `sail run`
    with no hand edits (read-only: copy it to change it), once per test run (`built_once`)."""
    from datasets import PUBLIC, PUBLIC_ROWS, public_csv

    def build(name: str, folder: Path) -> Path:
        data = public_csv(name, folder, PUBLIC_ROWS.get(name))
        return _run(bake(folder, project_name=name, data_file=str(data), target=PUBLIC[name][0]))

    def get(name: str) -> Path:
        return built_once(
            tmp_path_factory, worker_id, f"public-{name}", lambda folder: build(name, folder)
        )

    return get


@pytest.fixture
def regression_copy(regression_project, tmp_path) -> Path:
    """A private copy of the run regression project, for tests that change it."""
    dest = tmp_path / regression_project.name
    shutil.copytree(regression_project, dest, symlinks=True)
    return dest
