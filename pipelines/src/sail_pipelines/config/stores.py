"""Whether the stores a run writes to outlive it. In CI a job's workspace is deleted with the job,
so the embedded MLflow file in it, a DVC remote in it and images left in the runner's Docker are
throwaway: the steps whose work must be kept (`require`) refuse them there, with one line naming
what to set. One rule: the steps call `require` once, `sail doctor --ci` prints `stores`, and
the gate records `tracking_missing` for the report. SAIL_ALLOW_EPHEMERAL=1 opts out (demos)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from sail_pipelines.config.paths import ProjectPaths
from sail_pipelines.config.team import Settings
from sail_pipelines.config.team_file import TEAM_FILE, redact
from sail_pipelines.errors import SailError

OPT_OUT = "SAIL_ALLOW_EPHEMERAL"
TRACKING, DVC, REGISTRY = "tracking server", "DVC remote", "image registry"
# What each step keeps after the job, so the stores it needs to outlive it.
NEEDS: dict[str, tuple[str, ...]] = {
    "gate": (TRACKING,),  # the registered version (only `sail gate` without --no-register)
    "push": (DVC,),  # the data and the accepted bundle
    "package": (TRACKING,),  # the image recorded on the model version
    "publish": (REGISTRY,),  # the images
    "deploy": (REGISTRY,),  # the image the environment runs
    "promote": (TRACKING,),  # the champion alias and the audit record
    "monitor --champion": (TRACKING, DVC),  # the champion and its training split
}
# The infrastructure.yaml key and the variable that configure each store.
SETTING = {
    TRACKING: ("mlflow.tracking_uri", "MLFLOW_TRACKING_URI"),
    DVC: ("dvc.remote_url", "SAIL_DVC_REMOTE_URL"),
    REGISTRY: ("registry.url", "SAIL_REGISTRY"),
}
WHAT_IS_LOST = {
    TRACKING: "runs, registered versions, aliases and the audit history",
    DVC: "the pushed data and model bundles",
    REGISTRY: "the images",
}


@dataclass(frozen=True)
class Store:
    kind: str  # TRACKING, DVC or REGISTRY
    where: str  # shown to people: no credentials, relative to the project when inside it
    kept: bool  # outlives a CI job


def ci(env: Mapping[str, str]) -> str | None:
    """The CI this runs in, by the usual markers (JENKINS_URL, GITHUB_ACTIONS, CI), or None."""
    if env.get("JENKINS_URL"):
        return "Jenkins"
    if env.get("GITHUB_ACTIONS", "").lower() == "true":
        return "GitHub Actions"
    if env.get("CI", "").lower() not in ("", "0", "false"):
        return "CI"
    return None


def allowed(env: Mapping[str, str]) -> bool:
    return env.get(OPT_OUT, "").lower() in ("1", "true", "yes")


def workspaces(paths: ProjectPaths, env: Mapping[str, str]) -> tuple[Path, ...]:
    """The folders deleted with the job: the project, and the job's workspace (GitHub, Jenkins)."""
    named = (env.get("GITHUB_WORKSPACE"), env.get("WORKSPACE"))
    return (paths.root, *(Path(w).resolve() for w in named if w))


def _local_path(uri: str, root: Path) -> Path | None:
    """The file or folder of a local store URI (sqlite:///…, file:…, a plain path), else None."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        where = unquote(uri.split(":///", 1)[1]) if ":///" in uri else ""
        return (root / where).resolve() if where and where != ":memory:" else None
    if parts.scheme == "file":
        return Path(unquote(parts.path)).resolve()
    if parts.scheme:  # a server, a bucket, a database
        return None
    return (root / uri).resolve()


def default_dvc_remote(root: Path) -> str | None:
    """The URL of the project's default DVC remote (.dvc/config, .dvc/config.local), absolute
    for a folder; None when it has none."""
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=str(root / ".dvc"))
    except ConfigError as exc:
        raise SailError(f"cannot read the DVC configuration: {exc}") from exc
    name = config["core"].get("remote")
    return config["remote"].get(name, {}).get("url") if name else None


def _store(kind: str, location: str | None, paths: ProjectPaths, env: Mapping[str, str]) -> Store:
    if not location:
        return Store(kind, "none", False)
    local = _local_path(location, paths.root)
    folders = workspaces(paths, env)
    inside = next((f for f in folders if local and (local == f or f in local.parents)), None)
    if local is None or inside is None:
        return Store(kind, redact(location), True)
    shown = local.relative_to(paths.root) if paths.root in (local, *local.parents) else local
    return Store(kind, f"{shown} in the job's workspace", False)


def stores(
    paths: ProjectPaths,
    settings: Settings,
    env: Mapping[str, str],
    kinds: tuple[str, ...] = (TRACKING, DVC, REGISTRY),
) -> tuple[Store, ...]:
    """Each store of `kinds` a CI run writes to, where it is and whether it outlives the job."""

    def one(kind: str) -> Store:
        if kind == TRACKING:
            return _store(TRACKING, settings.tracking_uri, paths, env)
        if kind == DVC:
            return _store(
                DVC, settings.dvc_remote_url or default_dvc_remote(paths.root), paths, env
            )
        if settings.registry:
            return Store(REGISTRY, settings.registry, True)
        return Store(REGISTRY, "none: images stay in the runner's Docker", False)

    return tuple(one(kind) for kind in kinds)


def where_to_set(kind: str, env: Mapping[str, str]) -> str:
    """The one place each front end takes the setting from, named in the refusal."""
    key, variable = SETTING[kind]
    front_end = {
        "GitHub Actions": f"the repository variable {variable} (Settings > Secrets and variables "
        "> Actions)",
        "Jenkins": f"{variable} in the Jenkinsfile's sailPipeline(environment: [...])",
    }.get(ci(env) or "", f"{variable} in the CI job's environment")
    return f"set {front_end}, or {key} in {TEAM_FILE}"


def problem(store: Store, env: Mapping[str, str]) -> str:
    """Why a store is lost with the job, and what to set instead."""
    why = {
        TRACKING: f"no team tracking server: MLflow writes to {store.where}",
        DVC: f"no team DVC remote: `sail push` sends to {store.where}",
        REGISTRY: "no image registry: images stay in the runner's Docker",
    }[store.kind]
    if store.kind == DVC and store.where == "none":
        why = "no DVC remote"
    return f"{why}, deleted with the job; {where_to_set(store.kind, env)}"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def require(
    paths: ProjectPaths,
    settings: Settings,
    step: str,
    env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = _stderr,
) -> None:
    """In CI, refuse to run `step` on a store that dies with the job; outside CI, or with
    SAIL_ALLOW_EPHEMERAL=1 (said in the log), let it run."""
    env = os.environ if env is None else env
    if ci(env) is None:
        return
    lost = [s for s in stores(paths, settings, env, NEEDS[step]) if not s.kept]
    if not lost:
        return
    if allowed(env):
        kinds = ", ".join(f"{s.kind} {s.where}" for s in lost)
        say(f"sail {step}: {OPT_OUT}=1: writing to stores deleted with this CI job ({kinds})")
        return
    raise SailError(
        f"in CI this would lose {WHAT_IS_LOST[lost[0].kind]}: {problem(lost[0], env)} "
        f"({OPT_OUT}=1 runs it anyway, for demos)"
    )


def tracking_missing(
    paths: ProjectPaths, settings: Settings, env: Mapping[str, str] | None = None
) -> bool:
    """True in CI without a team tracking server: there is no champion to find, whatever the
    team has (what the report says instead of "no champion yet")."""
    env = os.environ if env is None else env
    if ci(env) is None:
        return False
    return not stores(paths, settings, env, (TRACKING,))[0].kept
