"""`sail promote`: move the `champion` alias to the `candidate` version.

The next gate then compares against the promoted model. The expected current champion can
be given, so two promotions racing each other cannot both win silently.
"""

from __future__ import annotations

from typing import Any

from . import tracking
from .config import Params, Settings
from .errors import SailError


def run(params: Params, settings: Settings, expect_champion: str | None = None) -> dict[str, Any]:
    model = params.gate.registered_model
    client = tracking.client(settings)
    with tracking.reachable(settings, "promoting"):
        candidate = tracking.version_by_alias(client, model, tracking.CANDIDATE)
        if candidate is None:
            raise SailError(f"no '{tracking.CANDIDATE}' version of {model} to promote: run the gate first")
        current = tracking.version_by_alias(client, model, tracking.CHAMPION)
        previous = None if current is None else str(current.version)
        if expect_champion is not None and (previous or "none") != expect_champion:
            actual = f"v{previous}" if previous else "no champion"
            raise SailError(f"{model} has {actual}, not the expected {expect_champion!r}: someone promoted meanwhile")
        if previous == str(candidate.version):
            return {"model": model, "from": previous, "to": previous, "changed": False}
        client.set_registered_model_alias(model, tracking.CHAMPION, candidate.version)
        if previous is not None:
            client.set_model_version_tag(model, candidate.version, "sail.previous_champion", previous)
    return {"model": model, "from": previous, "to": str(candidate.version), "changed": True}
