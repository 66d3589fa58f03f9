"""`sail run`: the whole pipeline in order, validate → split → train → evaluate → gate → push,
then a serving smoke test. DVC skips the stages whose inputs did not change.

With `--container` the same DVC stages train and evaluate in the project's images (the stage
commands see SAIL_RUNTIME=container), and the smoke test runs the packaged inference image.
"""

from __future__ import annotations

from typing import Any, Callable

from sail_pipelines.config import Params, ProjectPaths, Settings
from sail_pipelines.delivery import build, package, push
from sail_pipelines.evaluation import gate
from sail_pipelines.inference import smoke
from sail_pipelines.integrations.dvc import dvc
from sail_pipelines.integrity.signing import SignKey


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    key: SignKey,
    say: Callable[[str], None],
    container: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if container:
        say("== build: training and test/metric images")
        result["images"] = build.run(paths, params, settings, say=say)
    say("== dvc repro: validate, split, train, evaluate (up-to-date stages are skipped)")
    dvc(
        paths.root,
        "repro",
        "evaluate",
        capture=False,
        env={"SAIL_RUNTIME": "container"} if container else None,
    )
    say("== gate")
    verdict = result["gate"] = gate.run(paths, params, settings, key)
    say(
        f"gate passed: {verdict['candidate']} registered as {params.gate.registered_model} "
        f"v{verdict['registered_version']} (alias candidate)"
    )
    say("== push")
    pushed = result["push"] = push.run(paths, params, settings)
    say(f"pushed {', '.join(pushed['pushed'])}")
    if container:
        say("== package: inference image")
        image = package.run(paths, params, settings, key.verify_key, say=say)["image"]
        say("== serving smoke test in the inference container")
        served = result["smoke"] = smoke.run(paths.accepted_dir, key.verify_key, image=image)
    else:
        say("== serving smoke test")
        served = result["smoke"] = smoke.run(paths.accepted_dir, key.verify_key)
    say(
        f"smoke test passed: {served['rows']} holdout rows served by {served['url']} match the "
        "metric step"
    )
    return result
