"""A canary on this host: the candidate beside the live container behind the same nginx
router, sent a share of the requests by weighted round robin (`--strategy canary --weight P`:
P of every 100 requests, in turn). Deploying the same image again with another weight only
changes the share; weight 100 promotes it (the blue-green switch: it becomes live, the old one
is stopped and kept). `sail rollback --environment <env>` with a canary running drops it: the
live container takes all requests again and the canary goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sail_pipelines.delivery import bluegreen
from sail_pipelines.errors import SailError


def running(client: Any, prefix: Path) -> dict[str, Any] | None:
    """The recorded canary, if its container is still there."""
    canary = bluegreen.read_state(prefix).get("canary")
    return canary if bluegreen.find(client, canary) is not None else None


def set_weight(client: Any, prefix: Path, weight: int) -> dict[str, Any]:
    """Change the running canary's share; at 100 it becomes live (the old live is kept)."""
    state = bluegreen.read_state(prefix)
    canary, live = state["canary"], state["live"]
    if weight >= 100:
        switched = bluegreen.switch(prefix, prefix.name, state["port"], state, canary)
        bluegreen.retire(client, live)
        return {
            "promoted": True,
            "container": canary["container"],
            "color": canary["color"],
            "switch_seconds": switched["router"]["seconds"],
            "replaced": live["image"],
        }
    after = {**state, "canary": {**canary, "weight": weight}}
    applied = bluegreen.record(prefix, prefix.name, state, after)
    return {
        "weight": weight,
        "container": canary["container"],
        "color": canary["color"],
        "switch_seconds": applied["router"]["seconds"],
    }


def drop(client: Any, prefix: Path) -> dict[str, Any]:
    """All requests back to the live container, then the canary goes."""
    return drop_slot(client, prefix, "canary")


def drop_slot(client: Any, prefix: Path, slot: str) -> dict[str, Any]:
    """The router sends nothing more to the `slot` container beside the live one (a canary or
    a shadow), then it goes; the live container answered throughout."""
    state = bluegreen.read_state(prefix)
    beside = state.get(slot)
    if not beside:
        raise SailError(f"no {slot} runs in {prefix.name}")
    after = {k: v for k, v in state.items() if k != slot}
    applied = bluegreen.record(prefix, prefix.name, state, after)
    container = bluegreen.find(client, beside)
    if container is not None:
        container.remove(force=True)
    return {
        f"{slot}_removed": beside["container"],
        "image": state["live"]["image"],
        "image_id": state["live"]["image_id"],
        "switch_seconds": applied["router"]["seconds"],
    }
