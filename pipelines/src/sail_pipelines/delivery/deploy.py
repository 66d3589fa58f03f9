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

Locally (the embedded default) the environment's port belongs to an nginx router and the
image runs beside the live container as the other color, `<model>-<environment>-blue` or
`-green` (host networking, restart policy unless-stopped, a port of its own); once it is
ready and passes the smoke check the router switches to it (delivery/bluegreen.py). A deploy
that fails leaves the live container serving and nobody sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sail_pipelines.clients import containers, kubernetes, tracking
from sail_pipelines.clients.build import image_names
from sail_pipelines.clients.images import ImageRef, repository_name
from sail_pipelines.config import Params, ProjectPaths, Settings, stores
from sail_pipelines.delivery import bluegreen, canary, kube_render, release, shadow
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json
from sail_pipelines.integrity.signing import HmacKey, VerifyKey, serving_env

TARGETS = ("local", "kubernetes")
STRATEGIES = ("blue-green", "canary", "shadow")
DEFAULT_PORTS = {"staging": 8081, "production": 8080}
REPLICAS = {"staging": 1, "production": 2}
MAX_REPLICAS = {"staging": 2, "production": 6}  # the autoscaler's ceiling on Kubernetes
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
    strategy: str = "blue-green"  # one of STRATEGIES
    weight: int | None = None  # canary: the candidate's share of requests, in percent


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
        weight=deployment.weight or 0,
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


def check_strategy(deployment: Deployment) -> None:
    strategy, weight = deployment.strategy, deployment.weight
    if strategy == "canary" and weight is None:
        raise SailError("--strategy canary needs --weight P: the canary's share in percent")
    if strategy != "canary" and weight is not None:
        raise SailError("--weight goes with --strategy canary")


def _local(
    client: Any,
    prefix: Path,
    base: str,
    port: int,
    candidate: bluegreen.Candidate,
    weight: int,
    strategy: str,
) -> dict[str, Any]:
    """A running canary of the same image only changes its weight (at 100, or blue-green, it
    becomes live); any other image drops the canary first. A shadow only ever listens: any
    other deploy drops it first, and a shadow deploy leaves the live container as it is."""
    if strategy == "shadow":
        return shadow.deploy(client, prefix, base, candidate)
    if shadow.running(client, prefix):
        shadow.drop(client, prefix)
    running = canary.running(client, prefix)
    if running and running["image_id"] == candidate.image.id:
        return canary.set_weight(client, prefix, weight)
    if running:
        canary.drop(client, prefix)
    return bluegreen.deploy(client, prefix, base, port, candidate, weight)


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
    check_strategy(deployment)
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
        prefix = bluegreen.router_dir(paths, environment)
        state = bluegreen.read_state(prefix)
        port = deployment.port or state.get("port") or DEFAULT_PORTS[environment]
        labels = {
            "sail.model": params.gate.registered_model,
            "sail.environment": environment,
            "sail.image": ref,
        }
        candidate = bluegreen.Candidate(image, ref, serving_env(key), labels, deployment.timeout)
        base = f"{model}-{environment}"
        weight = deployment.weight or 100
        strategy = deployment.strategy
        result.update(_local(client, prefix, base, port, candidate, weight, strategy))
        if weight < 100 or strategy == "shadow":
            return result  # the tag moves when the canary is promoted; a shadow never is
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


def switch_back(
    paths: ProjectPaths, params: Params, settings: Settings, environment: str, ref: str | None
) -> dict[str, Any]:
    """Put this host's previous container of the environment live again (with `ref`: only if
    it runs that image); staging's tag follows, production's moved with the champion."""
    client = containers.docker_client()
    image_id = release.get_image(client, ref, pull=False).id if ref else None
    prefix = bluegreen.router_dir(paths, environment)
    if shadow.running(client, prefix) and ref is None:
        return shadow.drop(client, prefix)  # the live container never stopped serving
    if shadow.running(client, prefix):
        shadow.drop(client, prefix)
    if canary.running(client, prefix) and ref is None:
        return canary.drop(client, prefix)  # the live container never stopped serving
    if canary.running(client, prefix):
        canary.drop(client, prefix)
    result = bluegreen.switch_back(client, prefix, image_id)
    if environment == "staging":
        environment_tag = image_names(paths, params, settings).environment(environment)
        image = client.images.get(result["image_id"])
        result["tag"] = release.move_tag(
            client, image, environment_tag, push_it=bool(settings.registry)
        )
    return result


def canary_weight(
    paths: ProjectPaths, params: Params, settings: Settings, environment: str, weight: int
) -> dict[str, Any]:
    """The running canary's new share; at 100 it is live and the environment's tag follows."""
    client = containers.docker_client()
    prefix = bluegreen.router_dir(paths, environment)
    if canary.running(client, prefix) is None:
        raise SailError(f"no canary runs in {environment}")
    result = canary.set_weight(client, prefix, weight)
    if weight >= 100:
        live = bluegreen.read_state(prefix)["live"]
        environment_tag = image_names(paths, params, settings).environment(environment)
        result["tag"] = release.move_tag(
            client, client.images.get(live["image_id"]), environment_tag, bool(settings.registry)
        )
    return result
