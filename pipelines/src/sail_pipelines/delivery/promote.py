"""`sail promote`: make a gated version the champion, with its image, approved and recorded.

Compare-and-set under the registry lock (audit.py): the version must still hold `candidate`
(a newer build may have superseded it) and the champion must still be the one the approver
saw, so two promotions racing each other cannot both win. The next gate compares against
the new champion.

The version's inference image (model-version tag `sail.image`, set by `sail package`) becomes
`<repo>/inference:production`. A version without an image is still promoted: the gate's
comparison follows the alias, and projects without containers promote too. The output and
the audit record then say the image was not moved, and `sail deploy --environment
production` refuses to run an image that is not the champion's.

Before anything moves, the newest live evidence for the version's image (delivery/live_evidence.py)
is said and goes into the audit record (path, sha256, decision); with
`promotion.require_live_evidence` a version without a passing one is refused, under the lock,
with nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sail_pipelines.clients import containers, tracking
from sail_pipelines.clients.build import image_names
from sail_pipelines.config import Params, ProjectPaths, Settings, stores
from sail_pipelines.delivery import audit, live_evidence, release
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_json
from sail_pipelines.integrity.signing import Ed25519Signer, VerifyKey

PREVIOUS_CHAMPION = "sail.previous_champion"
LOCK_TIMEOUT = 60.0  # seconds a promotion waits for a concurrent one to finish


@dataclass(frozen=True)
class Promotion:
    version: str | None  # None: whichever version holds `candidate`
    expect_champion: str | None  # a version, 'none' for no champion, None to skip the check
    approver: str


def model_version(client: Any, model: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        raise SailError(f"{version!r} is not a model version number")
    try:
        return client.get_model_version(model, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise SailError(f"{model} has no version {version}") from exc
        raise


@dataclass(frozen=True)
class Keys:
    """What changing the champion needs: the audit key that seals the record, and (with a
    registry) the key that checks the image's signature before it becomes production."""

    audit: Ed25519Signer
    images: VerifyKey | None


def _image(
    settings: Settings, keys: Keys, image_ref: str | None, production: str, version: str
) -> tuple[Any, Any]:
    """The Docker client and the version's image, signature checked with a registry; neither
    without an image (a version registered before it was packaged)."""
    if not image_ref:
        return None, None
    try:
        docker = containers.docker_client()
        if settings.registry and keys.images is not None:
            return docker, release.signed_image(docker, settings, image_ref, keys.images)[0]
        return docker, release.get_image(docker, image_ref, pull=False)
    except SailError as exc:
        raise SailError(
            f"{exc}: cannot move {production} to v{version}'s image, nothing was changed"
        ) from exc


def move_champion(
    client: Any,
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    keys: Keys,
    records: list[dict[str, Any]],
    target: Any,
    previous: Any | None,
    action: str,
    approver: str,
    takeover: dict[str, Any] | None = None,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Image first (a missing or unsigned image changes nothing), then the alias, then the tag,
    then the record.

    Shared by promote and rollback; the caller holds the registry lock and has checked the history.
    """
    model = params.gate.registered_model
    version = str(target.version)
    image_ref = target.tags.get(release.IMAGE_TAG)
    production = image_names(paths, params, settings).environment("production")
    docker, image = _image(settings, keys, image_ref, production, version)
    client.set_registered_model_alias(model, tracking.CHAMPION, version)
    try:
        moved = (
            release.move_tag(docker, image, production, push_it=bool(settings.registry))
            if image
            else None
        )
    except SailError:
        if previous is None:
            client.delete_registered_model_alias(model, tracking.CHAMPION)
        else:
            client.set_registered_model_alias(model, tracking.CHAMPION, str(previous.version))
        raise
    at = audit.now()
    verb = "promoted" if action == "promote" else "restored"
    for name, value in (
        (f"sail.{verb}_by", approver),
        (f"sail.{verb}_at", at),
        (f"sail.{verb}_from", str(previous.version) if previous else "none"),
    ):
        client.set_model_version_tag(model, version, name, value)
    if action == "promote" and previous is not None:
        client.set_model_version_tag(model, version, PREVIOUS_CHAMPION, str(previous.version))
    return audit.append(
        client,
        paths,
        model,
        keys.audit,
        records,
        {
            "action": action,
            "from": str(previous.version) if previous else None,
            "to": version,
            "approver": approver,
            "at": at,
            "image": image_ref,
            "image_id": image.id if image else None,
            "production_tag": production if image else None,
            "pushed": bool(moved and moved["pushed"]),
            "previous_image": previous.tags.get(release.IMAGE_TAG) if previous else None,
            "note": None
            if image
            else f"v{version} has no {release.IMAGE_TAG} tag (no `sail package`): {production} "
            "was not moved",
            "lock_takeover": takeover and {k: v for k, v in takeover.items() if k != "token"},
            **({"live_evidence": evidence} if action == "promote" else {}),
        },
    )


def _target(client: Any, model: str, version: str | None) -> Any:
    """The version holding `candidate`, which must be `version` when one is given."""
    candidate = tracking.version_by_alias(client, model, tracking.CANDIDATE)
    if version is not None:
        target = model_version(client, model, version)
        if candidate is None or str(candidate.version) != str(target.version):
            now = f"v{candidate.version}" if candidate else "no version"
            raise SailError(
                f"v{target.version} of {model} no longer holds '{tracking.CANDIDATE}' ({now} "
                "does): a newer build superseded it, review and promote that one"
            )
        return target
    if candidate is None:
        raise SailError(
            f"no '{tracking.CANDIDATE}' version of {model} to promote: run the gate first"
        )
    return candidate


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    keys: Keys,
    promotion: Promotion,
    lock_timeout: float = LOCK_TIMEOUT,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    stores.require(paths, settings, "promote")
    model = params.gate.registered_model
    client = tracking.client(settings)
    with (
        tracking.reachable(settings, "promoting"),
        audit.registry_lock(client, model, promotion.approver, lock_timeout) as takeover,
    ):
        target = _target(client, model, promotion.version)
        current = tracking.version_by_alias(client, model, tracking.CHAMPION)
        previous = None if current is None else str(current.version)
        if (
            promotion.expect_champion is not None
            and (previous or "none") != promotion.expect_champion
        ):
            actual = f"v{previous}" if previous else "no champion"
            raise SailError(
                f"{model} has {actual}, not the expected {promotion.expect_champion!r}: someone "
                "promoted meanwhile"
            )
        if previous == str(target.version):
            return {"model": model, "from": previous, "to": previous, "changed": False}
        evidence = live_evidence.for_version(paths, settings, target)
        say(f"live evidence: {_line(paths, evidence, target)}")
        if params.promotion.require_live_evidence:
            live_evidence.require(evidence, target, paths.root)
        records = audit.history(client, model, keys.audit.verify_key)
        audit.check_head(records, model, previous)
        record = move_champion(
            client,
            paths,
            params,
            settings,
            keys,
            records,
            target,
            current,
            "promote",
            promotion.approver,
            takeover,
            evidence.audit(paths.root) if evidence else None,
        )
    return {
        "model": model,
        "from": previous,
        "to": str(target.version),
        "changed": True,
        "image": record["image"],
        "production_tag": record["production_tag"],
        "audit": record,
        "live_evidence": _line(paths, evidence, target),
    }


def _line(paths: ProjectPaths, evidence: live_evidence.Evidence | None, version: Any) -> str:
    if evidence is None:
        return f"none for v{version.version}'s image"
    return evidence.line(paths.root)


def show(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    version: str | None,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """`sail evidence`: what `sail promote` would show for this version (default: the candidate),
    written to reports/evidence.json (the Jenkins input message) and, on GitHub, appended to the
    job summary. It judges nothing: a refusal is promote's."""
    model = params.gate.registered_model
    client = tracking.client(settings)
    with tracking.reachable(settings, "reading the candidate"):
        target = (
            model_version(client, model, version)
            if version
            else tracking.version_by_alias(client, model, tracking.CANDIDATE)
        )
    if target is None:
        raise SailError(f"no '{tracking.CANDIDATE}' version of {model}: run the gate first")
    evidence = live_evidence.for_version(paths, settings, target)
    result = {
        "version": str(target.version),
        "image": target.tags.get(release.IMAGE_TAG),
        "line": f"live evidence: {_line(paths, evidence, target)}",
        "evidence": evidence.audit(paths.root) if evidence else None,
        "required": params.promotion.require_live_evidence,
        "job_summary": False,
    }
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(live_evidence.markdown(evidence, result["version"], paths.root) + "\n")
        except OSError as exc:
            raise SailError(
                f"cannot append to the job summary GITHUB_STEP_SUMMARY={summary}: {exc.strerror}"
            ) from exc
        result["job_summary"] = True
    write_json(paths.reports / live_evidence.SUMMARY_FILE, result)
    return result
