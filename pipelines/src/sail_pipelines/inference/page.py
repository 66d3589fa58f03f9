"""The try-it page (`/`), the interactive docs (`/docs`) and the OpenAPI document they read.

The pages are static files shipped in the wheel (`static/`, served by Flask at /static/): no
build step, no CDN, no inline script or style, so a strict Content-Security-Policy holds and
the page works in an image cut off from the internet. Everything they show comes from
/openapi.json and /metadata and is put in the DOM as text, never as HTML.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

from sail_pipelines.inference import openapi
from sail_pipelines.inference.requests import warm_up_record
from sail_pipelines.integrity.bundle import HOLDOUT, LoadedBundle

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGES = {"/": "index.html", "/docs": "docs.html"}


def _not_json(literal: str) -> None:
    raise ValueError(literal)


def examples(bundle: LoadedBundle) -> list[dict[str, Any]]:
    """The accepted bundle's holdout rows as a client sends them, else one typical record."""
    try:  # NaN is no JSON a client could send: such rows are no example
        records = json.loads(bundle.files[HOLDOUT], parse_constant=_not_json)["records"]
        if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
            return records
    except (KeyError, TypeError, ValueError):
        pass
    return [warm_up_record(bundle.schema, bundle.metadata)]


def register(
    app: Flask, bundle: LoadedBundle, model_name: str, max_records: int, max_body_bytes: int
) -> None:
    """Add /openapi.json, / and /docs to the API, and the CSP header to every page and file."""
    document = openapi.document(
        bundle.schema,
        bundle.metadata,
        model_name=model_name,
        classes=list(bundle.classes),
        examples=examples(bundle),
        max_records=max_records,
        max_body_bytes=max_body_bytes,
    )
    body = json.dumps(document, allow_nan=False)

    @app.get("/openapi.json")
    def openapi_json():
        return Response(body, mimetype="application/json")

    def page(name: str) -> Response:
        response = app.send_static_file(name)
        response.headers["Cache-Control"] = (
            "no-cache"  # a new bundle behind the same URL shows at once
        )
        return response

    @app.get("/")
    def try_it():
        return page(PAGES["/"])

    @app.get("/docs")
    def docs():
        return page(PAGES["/docs"])

    @app.after_request
    def security_headers(response: Response) -> Response:
        if request.path in PAGES or request.path.startswith(f"{app.static_url_path}/"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response
