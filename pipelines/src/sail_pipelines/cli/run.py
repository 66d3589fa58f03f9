"""`sail run`: the whole pipeline in order, validate → split → train → evaluate → gate → push,
then a serving smoke test. DVC skips the stages whose inputs did not change.

With `--container` the same DVC stages train and evaluate in the project's images (the stage
commands see SAIL_RUNTIME=container), and the smoke test runs the packaged inference image.

A run that changes nothing is skipped whole: after a successful run, .sail/last-run.json keeps a
fingerprint of what the outcome depends on besides the DVC stages (params, contract, team
settings, the pushed .dvc files, the key, this package's version). When it matches and `dvc
status` finds every stage and tracked file unchanged, the gate, push and smoke test would only
repeat themselves, so they are not run (`--force` runs them anyway). The heavy imports (scikit-
learn, MLflow) come after that check, so such a run takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from typing import Any, Callable

from sail_pipelines import __version__
from sail_pipelines.clients.dvc import dvc
from sail_pipelines.config import TEAM_FILE, TEAM_KEYS, Params, ProjectPaths, Settings
from sail_pipelines.files import write_atomic
from sail_pipelines.integrity.signing import SignKey

LAST_RUN = ".sail/last-run.json"
# The files besides DVC's stages whose change must run the pipeline again, relative to the root.
WATCHED = ("dvc.yaml", "dvc.lock", "params.yaml", TEAM_FILE, "pyproject.toml")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def team_environment() -> dict[str, str]:
    """The variables that override team settings, as digests (some hold credentials in URLs).
    Read before the run: MLflow's client exports MLFLOW_TRACKING_URI into the process."""
    variables = sorted({v for names in TEAM_KEYS.values() for v in names} | {"SAIL_RUNTIME"})
    return {v: _digest(os.environ[v].encode()) for v in variables if v in os.environ}


def fingerprint(
    paths: ProjectPaths, params: Params, key: SignKey, container: bool, env: dict[str, str]
) -> dict[str, Any]:
    """What a finished run's outcome depends on besides the DVC stages' own inputs."""
    watched = [
        *WATCHED,
        f"{params.raw_data}.dvc",
        f"{paths.accepted_dir.relative_to(paths.root)}.dvc",
    ]
    files = {}
    for name in watched:
        path = paths.root / name
        files[name] = _digest(path.read_bytes()) if path.is_file() else None
    return {
        "version": __version__,
        "container": container,
        "key_id": key.verify_key.key_id,
        "files": files,
        "environment": env,
    }


def unchanged(paths: ProjectPaths, current: dict[str, Any]) -> dict[str, Any] | None:
    """The last run's record when nothing it depends on changed since, else None."""
    try:
        last = json.loads((paths.root / LAST_RUN).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(last, dict) or last.get("fingerprint") != current:
        return None
    try:  # exit 1 when a stage or a tracked file changed
        dvc(paths.root, "status", "--quiet")
    except Exception:  # noqa: BLE001 - any doubt means: run
        return None
    return last


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    key: SignKey,
    say: Callable[[str], None],
    container: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    env = team_environment()
    before = fingerprint(paths, params, key, container, env)
    last = None if force else unchanged(paths, before)
    if last is not None:
        say(
            f"nothing changed since the last successful run ({last['finished']}): gate, push and "
            f"smoke test skipped; {params.gate.registered_model} v{last['registered_version']} "
            "stands (sail run --force runs them again)"
        )
        return {"skipped": True, **last}
    (paths.root / LAST_RUN).unlink(missing_ok=True)  # only a run that finishes leaves a record
    from sail_pipelines.clients import build
    from sail_pipelines.delivery import package, push
    from sail_pipelines.evaluation import gate
    from sail_pipelines.inference import smoke

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
    record = {
        "fingerprint": fingerprint(paths, params, key, container, env),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "registered_version": verdict["registered_version"],
    }
    write_atomic(
        paths.root / LAST_RUN, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n")
    )
    return result
