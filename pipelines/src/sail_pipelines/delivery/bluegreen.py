"""Blue-green on this host: two model containers behind the environment's nginx router.

The live container (blue or green) serves on a port of its own; the router owns the
environment's port. A deploy starts the new image as the other color, waits for `/ready` and
the smoke check of the holdout rows its bundle carries, then switches the router (nginx
reload: old workers finish what they hold) and stops the old container, which stays on the
host, stopped, as `previous`. `sail rollback` starts it again, waits for `/ready` and switches
back: seconds, no rebuild, no pull. A failure before the switch removes the new container and
leaves the router and the live container untouched, so nobody saw it.

What is live is recorded in `.sail/router/<environment>/state.json`, written atomically before
each reload; every deploy or rollback first renders the router from it again, so a process
killed between the two is repaired by the next one.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sail_pipelines.clients import router
from sail_pipelines.config import ProjectPaths
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json, write_json
from sail_pipelines.polling import wait_until

COLORS = ("blue", "green")
STATE = "state.json"
# Where the inference image holds its bundle (docker/Dockerfile): the holdout rows the smoke
# check sends travel with the image itself.
IMAGE_HOLDOUT = "/app/models/accepted/holdout.json"
LOG_TAIL = 20
STOP_SECONDS = 20
# A previous container served before: it gets this long to be ready again, however short the
# --timeout the new image was given.
RESTORE_TIMEOUT = 120.0


def router_dir(paths: ProjectPaths, environment: str) -> Path:
    return paths.root / ".sail" / "router" / environment


def read_state(prefix: Path) -> dict[str, Any]:
    path = prefix / STATE
    try:
        state = read_json(path) if path.is_file() else {}
    except ValueError as exc:
        raise SailError(f"{path} is not JSON ({exc}): remove it and deploy again") from exc
    return state if isinstance(state, dict) else {}


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_port(client: Any, prefix: Path, state: Mapping[str, Any], port: int, base: str) -> None:
    """The router's port must be free unless our router (or the container of a deploy from
    before the router) holds it."""
    ours = router.master_pid(prefix) is not None and state.get("port") == port
    if not ours and _named(client, base) is None and not port_free(port):
        raise SailError(f"127.0.0.1:{port} is in use by another process: choose another --port")


def find(client: Any, slot: Mapping[str, Any] | None) -> Any | None:
    """The container a state slot names (by id: names are reused), if it is still there."""
    import docker

    if not slot:
        return None
    try:
        return client.containers.get(slot["id"])
    except docker.errors.NotFound:
        return None


def log_tail(container: Any, secret: str | None) -> str:
    text = container.logs(tail=LOG_TAIL).decode(errors="replace").strip()
    if secret:
        text = text.replace(secret, "***")
    return "\n  ".join(text.splitlines()) or "(no output)"


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
        ready, timeout, 0.1, lambda: SailError(f"/ready did not answer 200 within {timeout:.0f}s")
    )


def image_holdout(container: Any) -> dict[str, Any] | None:
    """The holdout rows in the container's bundle; None for an image that carries none."""
    import docker

    try:
        stream, _ = container.get_archive(IMAGE_HOLDOUT)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return json.loads(member.read()) if member else None


def check_new(container: Any, url: str, timeout: float) -> dict[str, Any]:
    """/ready, then the smoke check of the image's own holdout rows."""
    from sail_pipelines.inference import smoke

    ready = wait_ready(container, url, timeout)
    holdout = image_holdout(container)
    if holdout is None:
        return {"ready_seconds": round(ready, 2), "smoke": "no holdout rows in the image"}
    checked = smoke.check(url, holdout, timeout)
    return {"ready_seconds": round(ready, 2), "smoke": {"rows": checked["rows"], "matched": True}}


def slot_of(container: Any, color: str, port: int, ref: str) -> dict[str, Any]:
    return {
        "color": color,
        "container": container.name,
        "id": container.id,
        "port": port,
        "image": ref,
        "image_id": container.image.id,
    }


def upstreams(state: Mapping[str, Any]) -> list[router.Upstream]:
    """Where the router sends: the live container, and a canary by its weight in percent."""
    live, canary = state["live"], state.get("canary")
    share = canary["weight"] if canary else 0
    sent = [router.Upstream(live["color"], live["container"], live["port"], 100 - share)]
    if canary:
        sent.append(router.Upstream(canary["color"], canary["container"], canary["port"], share))
    return sent


def shadow_of(state: Mapping[str, Any]) -> router.Upstream | None:
    """The shadow the router mirrors every request to, if one is recorded."""
    shadow = state.get("shadow")
    return router.Upstream(shadow["color"], shadow["container"], shadow["port"]) if shadow else None


def record(
    prefix: Path, environment: str, before: Mapping[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """Record `after`, then point the router at it; on a failure the state and the router go
    back to `before`."""
    router.write_config(environment, prefix, after["port"], upstreams(after), shadow_of(after))
    write_json(prefix / STATE, after)
    try:
        applied = router.apply(prefix)
    except SailError:
        if before:
            write_json(prefix / STATE, before)
            resync(prefix, environment, before)
        else:
            (prefix / STATE).unlink()
        raise
    return {**after, "router": applied}


def switch(
    prefix: Path, environment: str, port: int, state: dict[str, Any], live: dict[str, Any]
) -> dict[str, Any]:
    """Make `live` the live container (the old one becomes previous), with no canary."""
    after = {
        "environment": environment,
        "port": port,
        "live": {k: v for k, v in live.items() if k != "weight"},
        "previous": state.get("live"),
        "switched_at": time.time(),
    }
    return record(prefix, environment, state, after)


def resync(prefix: Path, environment: str, state: Mapping[str, Any]) -> None:
    """Render the router from the recorded state and reload it if it runs (a no-op switch)."""
    if not state.get("live") or router.master_pid(prefix) is None:
        return
    router.write_config(environment, prefix, state["port"], upstreams(state), shadow_of(state))
    router.apply(prefix)


def retire(client: Any, slot: Mapping[str, Any] | None) -> bool:
    """Stop the container the router no longer sends to; it stays for `sail rollback`."""
    container = find(client, slot)
    if container is None:
        return False
    container.stop(timeout=STOP_SECONDS)
    return True


def _named(client: Any, name: str) -> Any | None:
    import docker

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _clear_name(client: Any, name: str, keep: Any | None) -> Any | None:
    """Free `name` for the new container: the previous one (kept for rollback until the new one
    is live) is parked under another name, anything else there is a leftover and goes."""
    taken = _named(client, name)
    if taken is None:
        return None
    if keep is not None and taken.id == keep.id:
        leftover = _named(client, f"{name}-parked")
        if leftover is not None:
            leftover.remove(force=True)
        taken.rename(f"{name}-parked")
        return taken
    taken.remove(force=True)
    return None


@dataclass(frozen=True)
class Candidate:
    """The image a deploy puts beside the live container, and what its container gets."""

    image: Any
    ref: str
    env: Mapping[str, str]  # the serving environment (the public key only)
    labels: Mapping[str, str]
    timeout: float  # seconds to become ready


def _run(client: Any, candidate: Candidate, name: str, color: str, port: int) -> Any:
    return client.containers.run(
        candidate.image.id,
        name=name,
        detach=True,
        network_mode="host",
        environment={**candidate.env, "SAIL_HOST": "127.0.0.1", "SAIL_PORT": str(port)},
        restart_policy={"Name": "unless-stopped"},
        labels={**candidate.labels, "sail.color": color},
    )


def _give_up(
    exc: Exception, candidate: Candidate, container: Any | None, parked: Any | None, name: str
) -> str:
    """Remove the new container, give the parked one its name back; the reason and log tail."""
    import docker

    reason = exc.explanation if isinstance(exc, docker.errors.APIError) else str(exc)
    if container is not None:
        tail = log_tail(container, candidate.env.get("SAIL_VERIFY_KEY"))
        reason += f"\n  log tail of the new container:\n  {tail}"
        container.remove(force=True)
    if parked is not None:
        parked.rename(name)
    return reason


def _route(
    prefix: Path, port: int, state: dict[str, Any], live: Any, slot: dict[str, Any], weight: int
) -> dict[str, Any]:
    """Switch to `slot`, or with a weight under 100 send it that share beside the live one."""
    if weight >= 100:
        return switch(prefix, prefix.name, port, {**state, "live": live}, slot)
    after = {
        "environment": prefix.name,
        "port": port,
        "live": live,
        "previous": None,
        "canary": {**slot, "weight": weight},
        "switched_at": time.time(),
    }
    return record(prefix, prefix.name, state, after)


def deploy(
    client: Any, prefix: Path, base: str, port: int, candidate: Candidate, weight: int = 100
) -> dict[str, Any]:
    """Start the candidate beside the live container, check it, switch the router to it, stop
    the old one (a canary: send it `weight`% of the requests, keep the live one). Any failure
    before the switch took effect leaves the live container serving."""
    import docker

    from sail_pipelines.inference.smoke import free_port

    environment = prefix.name
    state = read_state(prefix)
    resync(prefix, environment, state)
    check_port(client, prefix, state, port, base)
    live = state.get("live") if find(client, state.get("live")) is not None else None
    if weight < 100 and live is None:
        raise SailError(f"a canary needs a live {environment} container: deploy one first")
    color = "green" if live and live["color"] == "blue" else "blue"
    name = f"{base}-{color}"
    previous = find(client, state.get("previous"))
    parked = _clear_name(client, name, previous)
    slot_port, container = free_port(), None
    url = f"http://127.0.0.1:{slot_port}"
    try:
        container = _run(client, candidate, name, color, slot_port)
        checked = check_new(container, url, candidate.timeout)
        legacy = _named(client, base)  # the single container of a deploy before the router
        if legacy is not None:
            legacy.remove(force=True)
        slot = slot_of(container, color, slot_port, candidate.ref)
        switched = _route(prefix, port, state, live, slot, weight)
    except (SailError, docker.errors.APIError) as exc:
        reason = _give_up(exc, candidate, container, parked, name)
        serving = f"{live['container']} ({live['image']})" if live else "nothing"
        raise SailError(
            f"{candidate.ref} was not switched to at {url}: {reason}\n"
            f"  {environment} still serves {serving}"
        ) from exc
    if previous is not None:
        previous.remove(force=True)  # the one before the old live: rollback goes one step back
    if weight >= 100:
        retire(client, live)
    return {
        **({"weight": weight} if weight < 100 else {}),
        "container": name,
        "color": color,
        "url": f"http://127.0.0.1:{port}",
        "upstream": url,
        **checked,
        "switch_seconds": switched["router"]["seconds"],
        "replaced": live["image"] if live else None,
        "previous_container": live["container"] if live else None,
    }


def switch_back(client: Any, prefix: Path, image_id: str | None = None) -> dict[str, Any]:
    """Make the previous container live again: start it, wait for /ready, switch, stop the
    one that was live. With `image_id`, only if the previous container runs that image."""
    environment = prefix.name
    state = read_state(prefix)
    resync(prefix, environment, state)
    previous, live = state.get("previous"), state.get("live")
    container = find(client, previous)
    if previous is None or container is None:
        raise SailError(f"no previous container of {environment} is left on this host")
    if image_id is not None and container.image.id != image_id:
        raise SailError(
            f"the previous container of {environment} runs {previous['image']}, not the image "
            "rolled back to"
        )
    started = time.monotonic()
    container.reload()
    if container.status != "running":
        container.start()
    ready = wait_ready(container, f"http://127.0.0.1:{previous['port']}", RESTORE_TIMEOUT)
    switched = switch(prefix, environment, state["port"], state, previous)
    retire(client, live)
    return {
        "container": previous["container"],
        "color": previous["color"],
        "image": previous["image"],
        "image_id": previous["image_id"],
        "url": f"http://127.0.0.1:{state['port']}",
        "ready_seconds": round(ready, 2),
        "switch_seconds": switched["router"]["seconds"],
        "rollback_seconds": round(time.monotonic() - started, 2),
        "replaced": live["image"] if live else None,
    }


def stop_all(client: Any, prefix: Path) -> None:
    """Stop the router and remove its containers (tests and benchmarks clean up with it)."""
    state = read_state(prefix)
    router.stop(prefix)
    for slot in (state.get(k) for k in ("live", "previous", "canary", "shadow")):
        container = find(client, slot)
        if container is not None:
            container.remove(force=True)
