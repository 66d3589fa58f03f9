"""`sail run`: the whole pipeline in order, validate → split → train → evaluate → gate → push,
then a serving smoke test. DVC skips the stages whose inputs did not change."""

from __future__ import annotations

from typing import Any, Callable

from . import gate, push, smoke
from .config import Params, ProjectPaths, Settings
from .dvc import dvc
from .signing import SigningKey


def run(paths: ProjectPaths, params: Params, settings: Settings, key: SigningKey, say: Callable[[str], None]) -> dict[str, Any]:
    say("== dvc repro: validate, split, train, evaluate (up-to-date stages are skipped)")
    dvc(paths.root, "repro", "evaluate", capture=False)
    say("== gate")
    verdict = gate.run(paths, params, settings, key)
    say(f"gate passed: {verdict['candidate']} registered as {params.gate.registered_model} v{verdict['registered_version']} (alias candidate)")
    say("== push")
    pushed = push.run(paths, params, settings)
    say(f"pushed {', '.join(pushed['pushed'])}")
    say("== serving smoke test")
    served = smoke.run(paths.accepted_dir, key)
    say(f"smoke test passed: {served['rows']} holdout rows served by {served['url']} match the metric step")
    return {"gate": verdict, "push": pushed, "smoke": served}
