"""`sail push`: send the accepted bundle and the data it was trained on to the DVC remote.

The data is the raw data and, when dvc.lock records it, the training split: monitoring the
champion later (`sail monitor --champion`) reads that split at the champion's commit.

Only a bundle the gate passed is pushed: the gate report and the bundle on disk must agree.
A team remote (dvc.remote_url in infrastructure.yaml or SAIL_DVC_REMOTE_URL) is written to
.dvc/config.local, never the committed .dvc/config, and holds no credentials: DVC reads those
from the environment. The transfer is retried with exponential backoff, and a later push
simply sends what is still missing, so an outage needs no cleanup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from sail_pipelines.clients import aws
from sail_pipelines.clients.dvc import dvc
from sail_pipelines.config import Params, ProjectPaths, RetryPolicy, Settings, stores
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation.gate import accepted_verdict
from sail_pipelines.polling import retry

TEAM_REMOTE = "sail-env"


def remote_config(root: Path, settings: Settings) -> dict[str, str]:
    """The team remote's DVC options: where, and for S3 the endpoint, region and profile (no
    secrets)."""
    url = settings.dvc_remote_url or ""
    if not url.startswith("s3://"):
        return {"url": str((root / url).resolve())}
    remote = {"url": url}
    if settings.aws.endpoint_url:
        remote["endpointurl"] = settings.aws.endpoint_url
    if settings.aws.region:
        remote["region"] = settings.aws.region
    # with a role, the role's credentials come from env
    if settings.aws.profile and not settings.aws.role_arn:
        remote["profile"] = settings.aws.profile
    return remote


def configure_remote(root: Path, settings: Settings) -> None:
    """Write the team remote to .dvc/config.local, as `dvc remote add --local --force` would, in one
    edit."""
    from dvc.config import Config, ConfigError

    try:
        with Config(dvc_dir=str(root / ".dvc")).edit("local") as conf:
            conf["remote"][TEAM_REMOTE] = remote_config(root, settings)
    except ConfigError as exc:
        raise SailError(
            f"cannot configure the DVC remote {settings.dvc_remote_url}: {exc}"
        ) from exc


def push_with_retries(
    root: Path,
    args: list[str],
    where: str,
    policy: RetryPolicy,
    env: dict[str, str],
    say: Callable[[str], None],
) -> None:
    """`dvc push`, tried policy.attempts times, waiting backoff_seconds * 2**n in between."""

    def reason(exc: BaseException) -> str:
        return str(exc).split(" failed: ", 1)[-1]  # DVC's own ERROR line

    def retrying(attempt: int, exc: BaseException, delay: float) -> None:
        say(
            f"sail push: attempt {attempt}/{policy.attempts} to {where} failed, retrying in "
            f"{delay:g}s: {reason(exc)}"
        )

    try:
        retry(
            # not --quiet: that would hide DVC's ERROR line
            lambda: dvc(root, "push", *args, env=env),
            policy.attempts,
            lambda attempt: policy.backoff_seconds * 2 ** (attempt - 1),
            SailError,
            retrying,
        )
    except SailError as exc:
        raise SailError(
            f"push to {where} failed after {policy.attempts} attempt(s): {reason(exc)}; nothing "
            "is lost, run `sail push` again when the remote is back"
        ) from exc


def made_here(paths: ProjectPaths, output: Path) -> list[str]:
    """`output` as a push target when a stage made it in this checkout (dvc.lock records it and
    it is on disk, so in DVC's cache), else nothing: a CI job handed only the bundle skips it."""
    lock = paths.root / "dvc.lock"
    if not (lock.is_file() and output.is_file()):
        return []
    where = str(output.relative_to(paths.root))
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    outs = [out.get("path") for stage in stages.values() for out in stage.get("outs", [])]
    return [where] if where in outs else []


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(
    paths: ProjectPaths, params: Params, settings: Settings, say: Callable[[str], None] = _stderr
) -> dict[str, Any]:
    stores.require(paths, settings, "push")
    gate = accepted_verdict(paths, "push")
    remote: list[str] = []
    if settings.dvc_remote_url:
        configure_remote(paths.root, settings)
        remote = ["--remote", TEAM_REMOTE]
    accepted = str(paths.accepted_dir.relative_to(paths.root))
    dvc(paths.root, "add", "--quiet", accepted)
    tracked = [f"{params.raw_data}.dvc", f"{accepted}.dvc"]
    missing = [t for t in tracked if not (paths.root / t).is_file()]
    if missing:
        raise SailError(f"not tracked by DVC: {', '.join(missing)} (run `dvc add` on the data)")
    made = made_here(paths, paths.train_csv)
    where = settings.dvc_remote_url or "the default DVC remote"
    # DVC's s3fs takes the team identity (a role's temporary credentials, the profile) from its
    # environment.
    env = aws.environment(settings.aws)
    # Two calls: DVC 3.67 silently skips some targets when .dvc files and stage outputs are mixed.
    for targets in [group for group in (tracked, made) if group]:
        push_with_retries(paths.root, [*remote, *targets], where, settings.retry, env, say)
    return {
        "pushed": tracked + made,
        "bundle_id": gate["accepted_bundle_id"],
        "remote": TEAM_REMOTE if remote else "default",
    }
