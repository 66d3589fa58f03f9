"""`sail rollback`: give the champion back to a former champion, with its image, recorded.

The line of champions is replayed from the verified audit history: a promotion adds the new
champion on top, a rollback drops back down to an earlier one. Rolling back returns to the
champion below the current one (or, with --to, to any champion further down), never to a
version that was not champion: that would be a promotion without its review. For champions
from before the audit history, the `sail.previous_champion` tag that promotion leaves on a
version is the line. When this host runs production behind its router and the previous
container there runs the image rolled back to, that container is switched back to at once
(delivery/bluegreen.py); otherwise CI or ops run `sail deploy --environment production`.
`sail rollback --environment staging` only switches staging back to its previous container.
"""

from __future__ import annotations

from typing import Any

from sail_pipelines.clients import tracking
from sail_pipelines.config import Params, ProjectPaths, Settings
from sail_pipelines.delivery import audit, bluegreen, deploy
from sail_pipelines.delivery.promote import (
    LOCK_TIMEOUT,
    PREVIOUS_CHAMPION,
    Keys,
    model_version,
    move_champion,
)
from sail_pipelines.errors import SailError


def champion_line(
    records: list[dict[str, Any]], current: str, previous_tag: str | None
) -> list[str]:
    """Versions that were champion, oldest at the bottom; the current champion on top."""
    if not records:
        return [v for v in (previous_tag, current) if v]
    line: list[str] = []
    for record in records:
        if record["action"] == "promote":
            if not line and record["from"]:
                line.append(record["from"])
            line.append(record["to"])
        else:
            while line and line[-1] != record["to"]:
                line.pop()
            line = line or [record["to"]]
    return line


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    keys: Keys,
    to: str | None,
    approver: str,
    lock_timeout: float = LOCK_TIMEOUT,
) -> dict[str, Any]:
    model = params.gate.registered_model
    client = tracking.client(settings)
    with (
        tracking.reachable(settings, "rolling back"),
        audit.registry_lock(client, model, approver, lock_timeout) as takeover,
    ):
        current = tracking.version_by_alias(client, model, tracking.CHAMPION)
        if current is None:
            raise SailError(f"nothing to roll back: {model} has no champion")
        champion = str(current.version)
        records = audit.history(client, model, keys.audit.verify_key)
        audit.check_head(records, model, champion)
        former = champion_line(records, champion, current.tags.get(PREVIOUS_CHAMPION))[:-1]
        if to is None:
            if not former:
                raise SailError(
                    f"nothing to roll back to: v{champion} is the first champion of {model}"
                )
            to = former[-1]
        elif to == champion:
            raise SailError(f"v{to} is already the champion of {model}")
        elif to not in former:
            listed = ", ".join(f"v{v}" for v in former) or "none"
            raise SailError(
                f"v{to} is not a former champion of {model} (former champions: {listed}): "
                "a version that never was champion goes through `sail promote`"
            )
        target = model_version(client, model, to)
        record = move_champion(
            client,
            paths,
            params,
            settings,
            keys,
            records,
            target,
            current,
            "rollback",
            approver,
            takeover,
        )
    result = {
        "model": model,
        "from": champion,
        "to": to,
        "image": record["image"],
        "production_tag": record["production_tag"],
        "audit": record,
    }
    if (bluegreen.router_dir(paths, "production") / bluegreen.STATE).is_file():
        result["local"] = _switch_production(paths, params, settings, record["production_tag"])
    return result


def _switch_production(
    paths: ProjectPaths, params: Params, settings: Settings, ref: str
) -> dict[str, Any]:
    """The champion moved; switch this host's production back too when its previous container
    runs that image, else say how it gets there."""
    try:
        return {
            "switched": True,
            **deploy.switch_back(paths, params, settings, "production", ref),
        }
    except SailError as exc:
        return {
            "switched": False,
            "reason": str(exc),
            "next": "sail deploy --environment production",
        }
