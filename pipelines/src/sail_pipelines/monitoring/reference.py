"""`sail monitor --champion`: compare traffic with what production serves, not with what the
checkout holds (CI never commits models/accepted.dvc). The bundle is the registered model's
champion, downloaded from MLflow and verified before anything in it is deserialized; the training
split is the one that bundle records (`train_hash`), from the work tree when it matches, else
through DVC at the commit the bundle was trained at (`git_commit`), checked against that md5.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from sail_pipelines.config import Params, ProjectPaths, Settings
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.bundle import BundleRejected, LoadedBundle
from sail_pipelines.integrity.signing import VerifyKey
from sail_pipelines.provenance import file_md5


def champion_bundle(params: Params, settings: Settings, key: VerifyKey) -> LoadedBundle:
    """The champion's accepted bundle, as the gate fetches it; each failure is one line."""
    from sail_pipelines.clients import tracking
    from sail_pipelines.inference import pyfunc

    model = params.gate.registered_model
    client = tracking.client(settings)
    with tracking.reachable(settings, "reading the champion"):
        version = tracking.version_by_alias(client, model, tracking.CHAMPION)
        if version is None:
            raise SailError(
                f"{model} has no champion yet: promote a version first (sail promote), "
                "or monitor models/accepted without --champion"
            )
        try:
            return pyfunc.download_bundle(client, version.run_id, key)
        except BundleRejected as exc:
            raise SailError(f"the champion {model} v{version.version} is refused: {exc}") from exc


def training_split(
    paths: ProjectPaths, settings: Settings, bundle: LoadedBundle
) -> Path | io.BytesIO:
    """The split the bundle was trained on: the local file when its md5 matches, else DVC's copy
    at the bundle's commit (held in memory: the work tree's own split stays as it is)."""
    md5 = bundle.metadata.get("train_hash")
    commit = str(bundle.metadata.get("git_commit") or "unknown")
    if not md5:
        raise SailError(
            f"bundle {bundle.bundle_id} records no train_hash: its training split "
            "cannot be identified"
        )
    if paths.train_csv.is_file() and file_md5(paths.train_csv) == md5:
        return paths.train_csv
    where = paths.train_csv.relative_to(paths.root).as_posix()
    data = _read_at(paths, settings, where, commit, md5)
    if hashlib.md5(data).hexdigest() != md5:
        raise SailError(
            f"{where} at commit {commit[:12]} is not the champion's training split "
            f"(md5 {md5}): the bundle was trained on uncommitted data; run "
            f"`dvc push {where}` where it was trained, or monitor without --champion"
        )
    return io.BytesIO(data)


def _read_at(paths: ProjectPaths, settings: Settings, where: str, commit: str, md5: str) -> Any:
    """The file's bytes as DVC tracks it at the commit, pulled from the project's remote."""
    import dvc.api

    from sail_pipelines.clients import aws
    from sail_pipelines.delivery.push import TEAM_REMOTE, configure_remote

    remote = None
    if settings.dvc_remote_url:
        configure_remote(paths.root, settings)
        remote = TEAM_REMOTE
    if settings.aws.configured:
        aws.apply(settings.aws)
    try:
        return dvc.api.read(where, repo=str(paths.root), rev=commit, remote=remote, mode="rb")
    except Exception as exc:  # noqa: BLE001 - git's, DVC's: unknown commit, not tracked, not pushed
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        raise SailError(
            f"the champion's training split (md5 {md5}, commit {commit[:12]}) is not {where} here "
            f"and DVC cannot fetch it at that commit ({reason}): fetch the full git history "
            f"(fetch-depth: 0) and `dvc push {where}` from the checkout that trained it"
        ) from None
