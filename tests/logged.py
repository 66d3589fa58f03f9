"""Traffic with the prediction log on: the real Flask app (in process) answering posted rows, for
the tests of what reads that log (monitor, feedback)."""

from __future__ import annotations

from pathlib import Path

from sail_pipelines.inference.prediction_log import LogSettings
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import load_bundle
from sail_pipelines.integrity.signing import VerifyKey


def post_logged(
    project: Path, verify_key: VerifyKey, log: Path, records: list[dict], per_request: int
) -> list[str]:
    """Posts `records` to the project's accepted model, `per_request` rows a request (one row as
    a bare object), with the prediction log written to `log`; returns the request ids."""
    client = create_app(
        load_bundle(project / "models" / "accepted", verify_key),
        log_settings=LogSettings(str(log)),
    ).test_client()
    ids = []
    for start in range(0, len(records), per_request):
        chunk = records[start : start + per_request]
        response = client.post("/predict", json=chunk if per_request > 1 else chunk[0])
        assert response.status_code == 200, response.get_json()
        ids.append(response.get_json()["request_id"])
    return ids
