"""Who moved the champion, when, from which version to which: serialized and tamper-evident.

Every change of the `champion` alias (promote, rollback) runs under a registry lock and leaves
one record, signed with the audit key pair (Ed25519, apart from the bundle keys: only the
promoting job holds SAIL_AUDIT_KEY, so a serving or training credential can neither write nor
rewrite history) and chained to the record before it by hash.
The records live where every CI runner can read them, as tags of the registered model
(`sail.audit.000001`, ...), and are appended to reports/audit.jsonl for the build's artifacts.

The lock is a registered model named `<model>.sail-lock`: creating a registered model is
atomic in every MLflow store (a unique name), so of two racing jobs exactly one gets it, on the
embedded SQLite store as on a team server, and the other waits and then re-checks. The lock is a
lease with an owner and an expiry, so one left by a killed job is taken over, not deleted by hand.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

from sail_pipelines.clients.tracking import AUDIT_TAG_PREFIX, audit_tags
from sail_pipelines.config import ProjectPaths
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic
from sail_pipelines.integrity.signing import Ed25519Signer, Ed25519Verifier

LOCK_SUFFIX = ".sail-lock"
LEASE_FIELDS = {"owner", "host", "pid", "token", "since", "expires"}
LEASE_SECONDS = 900.0  # longer than any promotion takes; a holder that died frees the lock after it
AUDIT_LOG = "audit.jsonl"


def approver(given: str | None, env: Mapping[str, str]) -> str:
    """--approver, else the CI's user (Jenkins BUILD_USER_ID/BUILD_USER, GitHub's actor), else the
    login."""
    for value in (
        given,
        env.get("BUILD_USER_ID"),
        env.get("BUILD_USER"),
        env.get("GITHUB_ACTOR"),
        env.get("USER"),
    ):
        if value and value.strip():
            return value.strip()
    return getpass.getuser()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def registry_lock(
    client: Any, model: str, owner: str, timeout: float, lease: float = LEASE_SECONDS
) -> Iterator[dict[str, Any] | None]:
    """Hold `<model>.sail-lock` while changing the champion; wait up to `timeout` seconds for it.

    The lock is a lease: its description records the owner and an expiry. A live lease is waited
    for, then refused naming its owner; an expired one (its holder died) is taken over, and the
    expired lease is yielded so the audit record can say so. Of two processes taking over the
    same expired lease, only the one that creates the claim `<lock>.<its token>` (atomic, like the
    lock) gets it.
    """
    from mlflow.exceptions import MlflowException

    name = model + LOCK_SUFFIX
    mine = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": uuid.uuid4().hex,
        "since": now(),
        "expires": _later(lease),
    }
    deadline, taken, claim = time.monotonic() + timeout, None, None
    while True:
        try:
            client.create_registered_model(name, description=json.dumps(mine))
            break
        except MlflowException as exc:
            # Taken; or released between the store's failed insert and its look-up of the holder.
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        held = _lease_of(client, name)
        if held is not None and held["expires"] <= now():
            claim = f"{name}.{held['token']}"
            if _created(client, claim):
                if _lease_of(client, name) == held:
                    client.update_registered_model(name, description=json.dumps(mine))
                    taken = held
                    break
                client.delete_registered_model(claim)  # released or taken meanwhile: start over
            claim = None
        elif held is not None and time.monotonic() >= deadline:
            raise SailError(
                f"another promotion of {model} is in progress: the lock is held by "
                f"{held['owner']} on {held['host']} (pid {held['pid']}) since {held['since']}, "
                f"until {held['expires']}; an expired lock is taken over"
            )
        time.sleep(0.2)
    try:
        yield taken
    finally:
        if (_lease_of(client, name) or {}).get("token") == mine["token"]:
            client.delete_registered_model(name)
        if claim:
            client.delete_registered_model(claim)


def _later(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def _lease_of(client: Any, name: str) -> dict[str, Any] | None:
    """The lease a lock holds; None once it is gone. A lock without one (left by an older sail)
    is an expired lease, so it can be taken over."""
    from mlflow.exceptions import MlflowException

    try:
        description = client.get_registered_model(name).description or ""
    except MlflowException:
        return None
    try:
        lease = json.loads(description)
        if isinstance(lease, dict) and LEASE_FIELDS <= set(lease):
            return lease
    except ValueError:
        pass
    token = hashlib.sha256(description.encode()).hexdigest()[:32]
    return {
        "owner": description or "unknown",
        "host": "?",
        "pid": "?",
        "token": token,
        "since": "?",
        "expires": "",
    }


def _created(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return False
    return True


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in record.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
    ).encode()


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(dict(record), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def history(client: Any, model: str, key: Ed25519Verifier) -> list[dict[str, Any]]:
    """The verified records, oldest first; a record edited, removed or re-signed stops
    everything."""
    records: list[dict[str, Any]] = []
    for position, (tag, text) in enumerate(audit_tags(client, model), start=1):
        where = f"audit record {tag} of {model}"
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise SailError(
                f"{where} is not JSON: the audit history was tampered with; refusing to change "
                "the champion"
            ) from exc
        if (
            not isinstance(record, dict)
            or record.get("seq") != position
            or tag != f"{AUDIT_TAG_PREFIX}{position:06d}"
        ):
            raise SailError(
                f"{where} is out of sequence (expected record {position}): the audit history was "
                "tampered with"
            )
        if record.get("key_id") != key.key_id:
            raise SailError(
                f"{where} was signed with key id {record.get('key_id')}, not this audit key's "
                f"{key.key_id}: use the project's audit key (SAIL_AUDIT_KEY)"
            )
        if not key.verify(_canonical(record), str(record.get("signature", ""))):
            raise SailError(
                f"{where} does not match its signature: the audit history was tampered with; "
                "refusing to change the champion"
            )
        if record.get("prev") != (_digest(records[-1]) if records else None):
            raise SailError(
                f"{where} does not follow the record before it: the audit history was tampered with"
            )
        records.append(record)
    return records


def check_head(records: list[dict[str, Any]], model: str, champion: str | None) -> None:
    """The registry's champion must be the one the last record left: else the alias was moved
    outside sail, or the last record was deleted."""
    if records and records[-1]["to"] != champion:
        actual = f"v{champion}" if champion else "no champion"
        raise SailError(
            f"{model} has {actual}, but its audit history ends with v{records[-1]['to']} as "
            "champion: the alias was moved outside sail or an audit record was removed; restore "
            "it before promoting"
        )


def append(
    client: Any,
    paths: ProjectPaths,
    model: str,
    key: Ed25519Signer,
    records: list[dict[str, Any]],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """Seal the next record, store it in MLflow, then append it to reports/audit.jsonl (under the
    lock)."""
    record = {
        **fields,
        "model": model,
        "seq": len(records) + 1,
        "prev": _digest(records[-1]) if records else None,
        "key_id": key.key_id,
    }
    record["signature"] = key.sign(_canonical(record))
    client.set_registered_model_tag(
        model, f"{AUDIT_TAG_PREFIX}{record['seq']:06d}", json.dumps(record, sort_keys=True)
    )
    log = paths.reports / AUDIT_LOG
    before = log.read_text() if log.is_file() else ""
    line = json.dumps(record, sort_keys=True) + "\n"
    write_atomic(
        log,
        lambda tmp: tmp.write_text(
            before + ("" if not before or before.endswith("\n") else "\n") + line
        ),
    )
    return record
