"""Run inside the inference image build: `python -m sail_pipelines.delivery.imagecheck BUNDLE
MANIFEST_SHA256`.

1. The bundle copied into the image must be the one whose signature `sail package` verified
   on the host. The build has no key, so it checks the digest of the manifest and every file
   hash against it; only then is anything unpickled.
2. It posts the holdout rows that travel with the model to the real Flask app and requires the
   metric step's predictions back: an image that cannot serve its model does not get built.
3. The try-it page, /docs, their files and /openapi.json answer: the wheel carried them in.
4. That request, plus the modules gunicorn and the CLI load, imports exactly what serving
   imports, so byte code is compiled for those modules only (the libraries go in without it to
   keep the image small, and a server compiling scikit-learn and pandas at every start is slow
   to become ready).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from sail_pipelines.inference import batch_io, explain
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import (
    HOLDOUT,
    BundleRejected,
    holdout_mismatches,
    load_by_digest,
)

# Loaded when the container starts but not by a test-client request.
STARTUP_MODULES = (
    "sail_pipelines.cli",
    "sail_pipelines.inference.batch_io",
    "gunicorn.arbiter",
    "gunicorn.workers.gthread",
    "gunicorn.glogging",
    "gunicorn.http.wsgi",
    "prometheus_client.multiprocess",
)
PAGES = (
    "/",
    "/docs",
    "/openapi.json",
    "/static/common.js",
    "/static/try.js",
    "/static/docs.js",
    "/static/page.css",
)


def check(bundle_dir: Path, manifest_sha256: str) -> str:
    """Return a problem, or '' when the image serves its bundle correctly."""
    try:
        bundle = load_by_digest(bundle_dir, manifest_sha256)
    except BundleRejected as exc:
        return str(exc)
    if HOLDOUT not in bundle.files:
        return (
            f"{bundle_dir} carries no {HOLDOUT}: only a bundle accepted by the gate can be packaged"
        )
    holdout = json.loads(bundle.files[HOLDOUT])
    client = create_app(bundle).test_client()
    response = client.post("/predict", json=holdout["records"])
    if response.status_code != 200:
        return (
            f"/predict answered {response.status_code} for the holdout rows: "
            f"{response.get_data(as_text=True)[:200]}"
        )
    mismatches = holdout_mismatches(response.get_json()["predictions"], holdout["predictions"])
    if mismatches:
        return f"served predictions differ from the metric step's at rows {mismatches[:10]}"
    for path in PAGES:
        with client.get(path) as page:
            if page.status_code != 200:
                return (
                    f"{path} answered {page.status_code}: the page files are not in the installed "
                    "wheel"
                )
    if os.environ.get(explain.SWITCH) == "true":
        problem = explains(client, bundle, holdout["records"])
        if problem:
            return problem
    for module in STARTUP_MODULES:
        importlib.import_module(module)
    batch_io.runner()  # the batch path this image takes: predict.py's where pandas is installed
    return ""


def explains(client: Any, bundle: Any, records: list[Any]) -> str:
    """serving.explanations on: the holdout rows are explained (compiling what that imports), or
    the model has no explainer at all; an explainer this image lacks the libraries for fails."""
    try:
        explain.explainer(bundle)
    except explain.Unexplainable as exc:
        missing = isinstance(exc.__cause__, ImportError)
        return f"serving.explanations is on but {exc}" if missing else ""
    response = client.post("/predict?explain=true", json=records)
    if response.status_code != 200:
        return (
            f"/predict?explain=true answered {response.status_code} for the holdout rows: "
            f"{response.get_data(as_text=True)[:200]}"
        )
    return ""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1]:
        print(
            "imagecheck: usage: python -m sail_pipelines.delivery.imagecheck BUNDLE "
            "MANIFEST_SHA256",
            file=sys.stderr,
        )
        return 2
    problem = check(Path(argv[0]), argv[1])
    if problem:
        print(f"imagecheck: {problem}", file=sys.stderr)
        return 1
    print(f"imagecheck: {argv[0]} is the verified bundle and serves its holdout rows correctly")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
