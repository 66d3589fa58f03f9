"""`sail deploy`: run an environment's inference image, on this host or on Kubernetes.

Staging runs the image `sail package` just built (reports/package.json); production runs
`<repo>/inference:production`, which only promotion and rollback move, and only if that image
embeds the champion's bundle. After a successful deploy `<repo>/inference:<environment>`
names what the environment runs.

With a registry, the image's signature (`sail publish`) is checked in the registry before
anything runs, and the image is then run (or handed to the cluster) by the digest that was
checked: an unsigned, re-tagged or foreign-key image is refused. Without a registry the images
never left this host and `sail package` verified the bundle inside. The serving container gets
the public key only (signing.serving_env).

Locally (the embedded default) the image runs as the container `<model>-<environment>` with
host networking and restart policy unless-stopped. The environment has one port, so the old
container is stopped, the new one started, and if the new one is not ready in time it is
removed and the old one started again: a failed deploy costs a restart, never the service.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from sail_pipelines.clients import containers, kubernetes, tracking
from sail_pipelines.clients.build import image_names
from sail_pipelines.clients.images import ImageRef, repository_name
from sail_pipelines.config import Params, ProjectPaths, Settings, stores
from sail_pipelines.delivery import kube_render, release
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json
from sail_pipelines.integrity.signing import HmacKey, VerifyKey, serving_env
from sail_pipelines.polling import wait_until

TARGETS = ("local", "kubernetes")
DEFAULT_PORTS = {"staging": 8081, "production": 8080}
REPLICAS = {"staging": 1, "production": 2}
MAX_REPLICAS = {"staging": 2, "production": 6}  # the autoscaler's ceiling on Kubernetes
LOG_TAIL = 20
# The previous container served before: it gets the default wait to be ready again, however
# short the --timeout the new image was given.
RESTORE_TIMEOUT = 120.0
PACKAGE_REPORT = "package.json"


@dataclass(frozen=True)
class Deployment:
    environment: str  # one of release.ENVIRONMENTS
    target: str = "local"
    port: int | None = (
        None  # local: the host port (default by environment); kubernetes: the Service port (80)
    )
    timeout: float = 120.0  # seconds to become ready
    render_only: bool = False  # kubernetes: write the manifests, apply nothing
    strategy: str = "blue-green"  # one of kubernetes.STRATEGIES
    weight: int = 10  # canary: percent of requests the new image takes


def source_image(paths: ProjectPaths, params: Params, settings: Settings, environment: str) -> str:
    """The ref an environment deploys: the packaged image for staging, the production tag for
    production."""
    if environment == "production":
        return image_names(paths, params, settings).environment("production")
    package = paths.reports / PACKAGE_REPORT
    if not package.is_file():
        raise SailError(
            f"no reports/{PACKAGE_REPORT}: run `sail package` before deploying to staging"
        )
    try:
        ref = read_json(package).get("image")
    except (ValueError, AttributeError):
        ref = None
    if not isinstance(ref, str) or not ref:
        raise SailError(f"reports/{PACKAGE_REPORT} names no image: run `sail package` again")
    return ref


def check_champion(params: Params, settings: Settings, image: Any, ref: str) -> str:
    """Production runs the champion's bundle and nothing else: the image labels `sail package`
    wrote must name the champion's version and accepted bundle."""
    model = params.gate.registered_model
    client = tracking.client(settings)
    with tracking.reachable(settings, "reading the champion"):
        champion = tracking.version_by_alias(client, model, tracking.CHAMPION)
    if champion is None:
        raise SailError(
            f"{model} has no champion: `sail promote` one before deploying to production"
        )
    labels = image.labels or {}
    embedded = (
        labels.get("sail.model"),
        labels.get("sail.model_version"),
        labels.get("sail.bundle_id"),
    )
    expected = (model, str(champion.version), champion.tags.get("sail.accepted_bundle_id"))
    if embedded != expected:
        has = f"v{embedded[1]}" if embedded[1] else "no model version label"
        how = (
            "promote a packaged version"
            if not champion.tags.get(release.IMAGE_TAG)
            else "run `sail promote` or `sail rollback` again"
        )
        raise SailError(
            f"{ref} holds {has}, not champion v{champion.version} of {model} (bundle "
            f"{expected[2]}): {how}"
        )
    return str(champion.version)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_ready(container: Any, url: str, timeout: float) -> float:
    """Seconds until /ready answers 200; fails as soon as the container exits or restarts."""
    from sail_pipelines.inference.smoke import answers_ready

    def ready() -> bool:
        container.reload()
        state = container.attrs["State"]
        if state["Status"] in ("exited", "dead"):
            raise SailError(f"the container exited with code {state.get('ExitCode')}")
        if state["Status"] == "restarting" or container.attrs.get("RestartCount", 0):
            raise SailError("the container exited and Docker is restarting it")
        return answers_ready(url)

    return wait_until(
        ready, timeout, 0.25, lambda: SailError(f"/ready did not answer 200 within {timeout:.0f}s")
    )


def _find(client: Any, name: str) -> Any | None:
    import docker

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _log_tail(container: Any, secret: str | None) -> str:
    text = container.logs(tail=LOG_TAIL).decode(errors="replace").strip()
    if secret:
        text = text.replace(secret, "***")
    return "\n  ".join(text.splitlines()) or "(no output)"


def _restore(parked: Any | None, name: str, url: str, timeout: float) -> str:
    if parked is None:
        return "nothing ran here before"
    parked.rename(name)
    parked.start()
    try:
        wait_ready(parked, url, timeout)
    except SailError as exc:
        return f"the previous container was restarted but is not ready either ({exc})"
    return (
        f"the previous container ({parked.labels.get('sail.image', 'unknown image')}) is serving "
        "again"
    )


def run_local(
    client: Any,
    image: Any,
    ref: str,
    name: str,
    port: int,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    timeout: float,
) -> dict[str, Any]:
    """Replace the container `name` with one of `image` serving on 127.0.0.1:port, or put the old
    one back."""
    import docker

    url = f"http://127.0.0.1:{port}"
    parked, leftover = _find(client, name), _find(client, f"{name}-previous")
    if parked is None:
        parked = leftover  # a deploy killed half-way left the old container parked
    elif leftover is not None:
        leftover.remove(force=True)
    if parked is not None and parked.name == name:
        parked.stop(timeout=20)
        parked.rename(f"{name}-previous")
    started, container = time.monotonic(), None
    try:
        if not port_free(port):
            raise SailError(f"127.0.0.1:{port} is in use by another process: choose another --port")
        container = client.containers.run(
            image.id,
            name=name,
            detach=True,
            network_mode="host",
            environment=dict(env),
            restart_policy={"Name": "unless-stopped"},
            labels=dict(labels),
        )
        ready = wait_ready(container, url, timeout)
    except (SailError, docker.errors.APIError) as exc:
        reason = exc.explanation if isinstance(exc, docker.errors.APIError) else str(exc)
        logs = ""
        if container is not None:
            logs = (
                "\n  log tail of the new container:\n"
                f"  {_log_tail(container, env.get('SAIL_VERIFY_KEY'))}"
            )
            container.remove(force=True)
        raise SailError(
            f"{ref} did not become ready at {url}: {reason}; "
            f"{_restore(parked, name, url, max(timeout, RESTORE_TIMEOUT))}{logs}"
        ) from exc
    replaced = None
    if parked is not None:
        replaced = parked.labels.get("sail.image")
        parked.remove(force=True)
    return {
        "container": name,
        "url": url,
        "ready_seconds": round(ready, 2),
        "swap_seconds": round(time.monotonic() - started, 2),
        "replaced": replaced,
    }


def _stable_image(client: Any, tag: str, repository: str) -> str | None:
    """What the environment's tag names (the image that answers while a shadow listens)."""
    try:
        return release.pinned_ref(release.get_image(client, tag, pull=False), repository)
    except SailError:
        return None


def _on_kubernetes(
    paths: ProjectPaths,
    deployment: Deployment,
    model: str,
    image: Any,
    ref: str,
    digest: str | None,
    key: VerifyKey,
    stable: str | None,
) -> dict[str, Any]:
    """Write deploy/<environment>/ for the image pinned by digest and, unless only rendering,
    apply it and wait until it serves. Blue-green starts the color the Service does not select
    (the cluster's, else the last rendered one's)."""
    environment = deployment.environment
    repository = ImageRef.parse(ref).repository
    pinned = f"{repository}@{digest}" if digest else release.pinned_ref(image, repository)
    verify_text = None if isinstance(key, HmacKey) else key.verify_key.text()
    directory = paths.root / "deploy" / environment
    workload = kubernetes.Workload(
        model,
        environment,
        pinned,
        verify_key=verify_text,
        service_port=deployment.port or 80,
        replicas=REPLICAS[environment],
        max_replicas=MAX_REPLICAS[environment],
        strategy=deployment.strategy,
        color=kube_render.other(kube_render.rendered_color(directory)),
        weight=deployment.weight,
        stable_image=stable,
    )
    written = kube_render.render(directory, workload, paths.root)
    result: dict[str, Any] = {"strategy": workload.strategy, "deployed_image": workload.image}
    if not deployment.render_only:
        context = kubernetes.current_context(directory)
        if workload.strategy == "blue-green":
            live = kubernetes.live_color(workload, context)
            workload = replace(workload, color=kube_render.other(live))
            written = kube_render.render(directory, workload, paths.root)
        result.update(kubernetes.apply(directory, workload, deployment.timeout, context))
    if workload.strategy == "blue-green":
        result["color"] = workload.color
    result["manifests"] = [str(p.relative_to(paths.root)) for p in written]
    return result


def run(
    paths: ProjectPaths, params: Params, settings: Settings, key: VerifyKey, deployment: Deployment
) -> dict[str, Any]:
    environment, target = deployment.environment, deployment.target
    if environment not in release.ENVIRONMENTS:
        raise SailError(
            f"unknown environment {environment!r}: one of {', '.join(release.ENVIRONMENTS)}"
        )
    if target not in TARGETS:
        raise SailError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")
    stores.require(paths, settings, "deploy")
    ref = source_image(paths, params, settings, environment)
    client = containers.docker_client()
    digest = None
    if settings.registry:
        image, ref, digest = release.signed_image(client, settings, ref, key)
    else:
        try:
            image = release.get_image(client, ref, pull=False)
        except SailError as exc:
            how = "`sail promote` moves it" if environment == "production" else "run `sail package`"
            raise SailError(f"{exc}: {how}") from exc
    result: dict[str, Any] = {
        "environment": environment,
        "target": target,
        "image": ref,
        "image_id": image.id,
    }
    if digest:
        result["signature"] = {"digest": digest, "key_id": key.key_id}
    if environment == "production":
        result["champion"] = check_champion(params, settings, image, ref)
    model = repository_name(params.gate.registered_model)
    if target == "local":
        port = deployment.port or DEFAULT_PORTS[environment]
        labels = {
            "sail.model": params.gate.registered_model,
            "sail.environment": environment,
            "sail.image": ref,
        }
        env = {"SAIL_HOST": "127.0.0.1", "SAIL_PORT": str(port), **serving_env(key)}
        name = f"{model}-{environment}"
        result.update(run_local(client, image, ref, name, port, env, labels, deployment.timeout))
    else:
        stable = None
        if deployment.strategy == "shadow":
            tag = image_names(paths, params, settings).environment(environment)
            stable = _stable_image(client, tag, ImageRef.parse(ref).repository)
        result.update(_on_kubernetes(paths, deployment, model, image, ref, digest, key, stable))
        if deployment.render_only:
            return result
    environment_tag = image_names(paths, params, settings).environment(environment)
    result["tag"] = release.move_tag(
        client, image, environment_tag, push_it=bool(settings.registry)
    )
    return result
