"""Running pipeline steps in the project's images, through the Docker SDK.

Each step's container sees only what that step needs, mounted at the same absolute paths as
on the host (so MLflow's recorded artifact paths agree). The training container gets the
training split and never the test split or the raw data; the metric container gets the
test split and the candidates, read-only. All containers use host networking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.errors import SailError

# Environment a step container inherits from the host: tracking, storage and signing settings.
PASSED_PREFIXES = ("MLFLOW_", "AWS_", "SAIL_")
NOT_PASSED = {"SAIL_RUNTIME", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"}
PRIVATE_KEYS = {"SAIL_SIGNING_KEY", "SAIL_AUDIT_KEY"}
LOG_TAIL = 15


@dataclass(frozen=True)
class Mount:
    path: Path  # same path on the host and in the container
    writable: bool = False


def train_mounts(paths: ProjectPaths) -> list[Mount]:
    """pyproject.toml too, where there is one: the bundle records the project's dependency
    versions."""
    return [
        Mount(paths.params),
        Mount(paths.schema),
        Mount(paths.train_csv),
        Mount(paths.candidates_dir, writable=True),
        *([Mount(paths.pyproject)] if paths.pyproject.is_file() else []),
    ]


def metric_mounts(paths: ProjectPaths, settings: Settings) -> list[Mount]:
    mounts = [
        Mount(paths.params),
        Mount(paths.schema),
        Mount(paths.test_csv),
        Mount(paths.candidates_dir),
        Mount(paths.reports, writable=True),
    ]
    if settings.artifact_location:  # the embedded SQLite store lives in the project
        mounts.append(Mount(paths.root / ".mlflow", writable=True))
    return mounts


def step_env(
    env: Mapping[str, str], extra: Mapping[str, str] | None = None, private: bool = True
) -> dict[str, str]:
    """The host's settings for a step container; `private=False` for a step that only verifies:
    the private keys stay out (pass the verify key in `extra`)."""
    dropped = NOT_PASSED if private else NOT_PASSED | PRIVATE_KEYS
    passed = {k: v for k, v in env.items() if k.startswith(PASSED_PREFIXES) and k not in dropped}
    return {**passed, **(extra or {})}


def team_env(settings: Settings) -> dict[str, str]:
    """A step container sees the environment, not infrastructure.yaml: hand it the team
    settings and the AWS identity (an assumed role's temporary credentials included)."""
    from sail_pipelines.clients.aws import environment

    return {**settings.team_env(), **environment(settings.aws)}


def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the local socket")
        raise SailError(
            f"Docker is not reachable at {where}: {str(exc).splitlines()[0][:200]}"
        ) from exc
    return client


def build_image(
    client: Any,
    root: Path,
    dockerfile: str,
    target: str,
    tag: str,
    base_image: str | None,
    labels: Mapping[str, str],
    buildargs: Mapping[str, str] | None = None,
) -> str:
    """Build one target of the Dockerfile with host networking; a failure names the failing step."""
    args = {**({"BASE_IMAGE": base_image} if base_image else {}), **(buildargs or {})}
    tail: list[str] = []
    image_id = None
    for chunk in client.api.build(
        path=str(root),
        dockerfile=dockerfile,
        target=target,
        tag=tag,
        buildargs=args,
        labels=dict(labels),
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "stream" in chunk:
            tail = (tail + [line for line in chunk["stream"].splitlines() if line.strip()])[
                -LOG_TAIL:
            ]
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            detail = "\n  ".join(tail[-8:])
            raise SailError(f"building {tag} failed: {chunk['error'].strip()}\n  {detail}")
    if image_id is None:
        raise SailError(f"building {tag} produced no image")
    return tag


def _docker_mounts(mounts: Iterable[Mount]) -> list[Any]:
    from docker.types import Mount as DockerMount

    return [
        DockerMount(target=str(m.path), source=str(m.path), type="bind", read_only=not m.writable)
        for m in mounts
    ]


def start(
    client: Any,
    image: str,
    args: list[str],
    mounts: list[Mount],
    env: Mapping[str, str],
    workdir: Path,
    labels: Mapping[str, str],
) -> Any:
    import docker

    missing = [str(m.path) for m in mounts if not m.path.exists()]
    if missing:
        raise SailError(f"cannot start {image}: missing {', '.join(missing)}")
    try:
        return client.containers.run(
            image,
            args,
            detach=True,
            network_mode="host",
            mounts=_docker_mounts(mounts),
            environment=dict(env),
            user=f"{os.getuid()}:{os.getgid()}",
            working_dir=str(workdir),
            labels=dict(labels),
        )
    except docker.errors.ImageNotFound as exc:
        raise SailError(f"image {image} not found: run `sail build`") from exc
    except docker.errors.APIError as exc:
        raise SailError(f"cannot start {image}: {exc.explanation or exc}") from exc


def wait_all(
    containers: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, dict[str, str]]:
    """Wait for every container, then remove them all; raise naming each one that failed.
    Returns when each ran (Docker's StartedAt/FinishedAt), which shows they overlapped."""
    failures, ran = [], {}
    try:
        for name, container in containers.items():
            status = container.wait()["StatusCode"]
            logs = container.logs().decode(errors="replace").strip().splitlines()
            container.reload()
            state = container.attrs["State"]
            ran[name] = {"started": state["StartedAt"], "finished": state["FinishedAt"]}
            if status != 0:
                failures.append(f"{name} (exit {status}): " + " | ".join(logs[-3:]))
            else:
                say(f"{name}: done")
    finally:
        for container in containers.values():
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone is fine; nothing else to do on cleanup
                pass
    if failures:
        raise SailError("; ".join(failures))
    return ran


def run_steps(
    client: Any,
    image: str,
    steps: Mapping[str, list[str]],
    mounts: list[Mount],
    env: Mapping[str, str],
    paths: ProjectPaths,
    say: Callable[[str], None],
) -> dict[str, dict[str, str]]:
    """Start one container per step at once, so they run in parallel, and wait for all of them."""
    for mount in mounts:
        if mount.writable:
            mount.path.mkdir(parents=True, exist_ok=True)
    started: dict[str, Any] = {}
    try:
        for name, args in steps.items():
            say(f"{name}: started in {image}")
            started[name] = start(
                client,
                image,
                ["--project", str(paths.root), *args],
                mounts,
                env,
                paths.root,
                {"sail.step": name},
            )
    except BaseException:
        for container in started.values():
            container.remove(force=True)
        raise
    return wait_all(started, say)
