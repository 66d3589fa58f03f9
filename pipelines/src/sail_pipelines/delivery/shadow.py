"""A shadow on this host: the candidate beside the live container, sent a copy of every
request by the router (nginx `mirror`) and never answering anyone; the live container's answer
is the only one the client sees.

`sail deploy --strategy shadow` starts it like a canary (ready, then the smoke check of its
holdout rows) and records it in the router's state; the router then mirrors to it. Its
prediction log goes to a file of its own on the host (`.sail/router/<environment>/logs/`,
mounted into the container); the live container keeps logging to its stdout. Both log the
router's request id, so `sail shadow report` joins them. A shadow never becomes live by itself:
`sail rollback` drops it, and a blue-green or canary deploy drops it first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sail_pipelines.delivery import bluegreen, canary
from sail_pipelines.errors import SailError

COLOR = "shadow"
LOGS = "logs"  # under the router's folder, mounted into the shadow container
MOUNT = "/sail-logs"
LOG_NAME = "shadow-predictions.jsonl"


def running(client: Any, prefix: Path) -> dict[str, Any] | None:
    """The recorded shadow, if its container is still there."""
    shadow = bluegreen.read_state(prefix).get("shadow")
    return shadow if bluegreen.find(client, shadow) is not None else None


def _run(client: Any, candidate: bluegreen.Candidate, name: str, port: int, logs: Path) -> Any:
    """The shadow container, writing its prediction log to `logs` on the host."""
    serving = {"SAIL_HOST": "127.0.0.1", "SAIL_PORT": str(port)}
    return client.containers.run(
        candidate.image.id,
        name=name,
        detach=True,
        network_mode="host",
        environment={
            **candidate.env,
            **serving,
            "SAIL_PREDICTION_LOG": f"{MOUNT}/{LOG_NAME}",
        },
        volumes={str(logs): {"bind": MOUNT, "mode": "rw"}},
        restart_policy={"Name": "unless-stopped"},
        labels={**candidate.labels, "sail.color": COLOR},
    )


def _fresh_logs(prefix: Path) -> Path:
    """An empty log folder the image's own user may write to (it is not the host's user)."""
    logs = prefix / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    logs.chmod(0o777)
    (logs / LOG_NAME).unlink(missing_ok=True)
    return logs


def deploy(client: Any, prefix: Path, base: str, candidate: bluegreen.Candidate) -> dict[str, Any]:
    """Start the candidate as the live container's shadow, check it, have the router mirror to
    it. A failure removes it; the live container and the router never changed."""
    import docker

    from sail_pipelines.inference.smoke import free_port

    environment = prefix.name
    state = bluegreen.read_state(prefix)
    bluegreen.resync(prefix, environment, state)
    if bluegreen.find(client, state.get("live")) is None:
        raise SailError(f"a shadow needs a live {environment} container: deploy one first")
    if bluegreen.find(client, state.get("canary")) is not None:
        raise SailError(
            f"a canary runs in {environment}: promote it or `sail rollback --environment "
            f"{environment}` before starting a shadow"
        )
    if running(client, prefix):
        drop(client, prefix)
        state = bluegreen.read_state(prefix)
    name = f"{base}-{COLOR}"
    leftover = bluegreen.find(client, {"id": name})
    if leftover is not None:
        leftover.remove(force=True)
    port, container = free_port(), None
    url = f"http://127.0.0.1:{port}"
    logs = _fresh_logs(prefix)
    try:
        container = _run(client, candidate, name, port, logs)
        checked = bluegreen.check_new(container, url, candidate.timeout)
        slot = {
            **bluegreen.slot_of(container, COLOR, port, candidate.ref),
            "log": str(logs / LOG_NAME),
            "started_at": time.time(),
        }
        applied = bluegreen.record(prefix, environment, state, {**state, "shadow": slot})
    except (SailError, docker.errors.APIError) as exc:
        reason = exc.explanation if isinstance(exc, docker.errors.APIError) else str(exc)
        if container is not None:
            tail = bluegreen.log_tail(container, candidate.env.get("SAIL_VERIFY_KEY"))
            reason += f"\n  log tail of the shadow container:\n  {tail}"
            container.remove(force=True)
        live = state["live"]
        raise SailError(
            f"{candidate.ref} was not started as a shadow at {url}: {reason}\n"
            f"  {environment} still serves {live['container']} ({live['image']}) alone"
        ) from exc
    return {
        "shadow": name,
        "url": f"http://127.0.0.1:{state['port']}",
        "upstream": url,
        **checked,
        "prediction_log": str(logs / LOG_NAME),
        "live": state["live"]["container"],
        "switch_seconds": applied["router"]["seconds"],
    }


def drop(client: Any, prefix: Path) -> dict[str, Any]:
    """The router stops mirroring, then the shadow goes (its prediction log stays)."""
    return canary.drop_slot(client, prefix, "shadow")
