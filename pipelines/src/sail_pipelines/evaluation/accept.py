"""Accepting a model that passed the gate: a serving check first, then the release, all or nothing.

A model that cannot be served must never be registered: the holdout rows go through the real
API code (the Flask app, real JSON) before the registry is touched. The release itself is a few
steps against MLflow and the disk; a failure at any of them undoes the ones before, so the
registry keeps its aliases, models/accepted keeps the last accepted bundle, and nothing is left
for `sail push` to ship.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from sail_pipelines.clients import tracking
from sail_pipelines.errors import SailError
from sail_pipelines.inference import pyfunc
from sail_pipelines.integrity.bundle import (
    LoadedBundle,
    holdout_mismatches,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import SignKey


def serving_check(bundle: LoadedBundle, holdout: Mapping[str, Any]) -> None:
    """Post the holdout rows, as JSON, to the API built around this bundle, and compare."""
    from sail_pipelines.inference.serve import create_app

    try:
        body = json.dumps(holdout["records"], allow_nan=False)
    except ValueError as exc:
        raise SailError(
            "the holdout rows hold NaN or infinity, which JSON cannot carry: nothing was registered"
        ) from exc
    app = create_app(bundle)
    app.logger.disabled = True  # the gate reports the outcome; no request log lines in its output
    with app.test_client() as client:
        response = client.post("/predict", data=body, content_type="application/json")
    if response.status_code != 200:
        detail = (response.get_json(silent=True) or {}).get("error", response.status_code)
        raise SailError(
            f"serving check: the API refused the holdout rows ({detail}); nothing was registered"
        )
    mismatches = holdout_mismatches(response.get_json()["predictions"], holdout["predictions"])
    if mismatches:
        raise SailError(
            "serving check: served predictions differ from the metric step's at rows "
            f"{mismatches[:10]}; nothing was registered"
        )


def release(
    client: Any,
    model: str,
    run_id: str,
    tags: dict[str, str],
    accepted_dir: Path,
    files: dict[str, bytes],
    metadata: Callable[[str], dict[str, Any]],
    key: SignKey,
    example: list[dict[str, Any]],
) -> tuple[str, str]:
    """Register the run's model version, log its accepted bundle as an MLflow model (the version's
    source, `example` its input example), write it to `accepted_dir`, move `candidate` to it.
    Returns (version, accepted bundle id). On any failure the steps already done are undone."""
    before = tracking.version_by_alias(client, model, tracking.CANDIDATE)
    known = {
        v.version for v in client.search_model_versions(f"name='{model}' and run_id='{run_id}'")
    }
    registered = tracking.register(
        client, model, run_id, tags["source"], {k: v for k, v in tags.items() if k != "source"}
    )
    version = str(registered.version)
    # data/accepted in the model
    staging = Path(tempfile.mkdtemp(prefix="sail-accepted-")) / accepted_dir.name
    try:
        signed = metadata(version)
        accepted_id = write_bundle(staging, files, signed, key)
        model_dir = staging.parent / pyfunc.ARTIFACT
        pyfunc.save(load_bundle(staging, key), model_dir, example)
        client.log_artifacts(run_id, str(model_dir), pyfunc.ARTIFACT)
        client.set_model_version_tag(model, version, "sail.accepted_bundle_id", accepted_id)
        client.set_registered_model_alias(model, tracking.CANDIDATE, version)
        write_bundle(accepted_dir, files, signed, key)  # the same bytes: the same bundle id
    except BaseException:
        _undo(client, model, version, version not in known, before)
        raise
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return version, accepted_id


def _undo(client: Any, model: str, version: str, created: bool, before: Any) -> None:
    """Put the registry back as it was: the old `candidate` alias, and no new version. Best effort,
    each step on its own: the failure that brought us here is what the caller reports."""
    with contextlib.suppress(Exception):
        if before is not None:
            client.set_registered_model_alias(model, tracking.CANDIDATE, str(before.version))
        else:
            client.delete_registered_model_alias(model, tracking.CANDIDATE)
    if created:
        with contextlib.suppress(Exception):
            client.delete_model_version(model, version)
