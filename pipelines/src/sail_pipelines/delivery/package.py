"""`sail package`: the inference image, with the gated bundle embedded.

The bundle's signature is verified here, on the host, and the build gets only the digest of the
manifest that was verified: the build checks every file against it (no private key enters the
image build), and the server checks the signature again when the container starts, with the
public key baked into the image (Ed25519; the image needs no key from its environment then).
The image ref is recorded on the MLflow model version, so promotion and rollback can find it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

from sail_pipelines.clients import containers, tracking
from sail_pipelines.clients.build import (
    DOCKERFILE,
    BuildContext,
    image_names,
    inference_deps,
    stage,
    update,
)
from sail_pipelines.config import Params, ProjectPaths, Settings, stores
from sail_pipelines.delivery.release import IMAGE_TAG
from sail_pipelines.evaluation.gate import accepted_verdict
from sail_pipelines.files import write_json
from sail_pipelines.integrity.bundle import MANIFEST, METADATA, LoadedBundle, read_verified
from sail_pipelines.integrity.signing import VERIFY_FILE, HmacKey, VerifyKey


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    key: VerifyKey,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    stores.require(paths, settings, "package")
    verdict = accepted_verdict(paths, "package")
    files, bundle_id = read_verified(paths.accepted_dir, key)
    metadata = json.loads(files[METADATA])
    runtime = LoadedBundle(paths.accepted_dir, bundle_id, metadata, files).runtime
    manifest_sha256 = hashlib.sha256((paths.accepted_dir / MANIFEST).read_bytes()).hexdigest()
    version = str(verdict["registered_version"])
    names = image_names(paths, params, settings)
    client = containers.docker_client()
    context = BuildContext.of(paths)
    explanations = params.serving.explanations
    stage(context, explanations)
    bake_verify_key(context, key)
    ref = names.inference(version)
    say(f"building {ref}")
    containers.build_image(
        client,
        paths.root,
        DOCKERFILE,
        "inference",
        ref,
        settings.base_image,
        labels={
            "org.opencontainers.image.revision": names.code,
            "sail.model": params.gate.registered_model,
            "sail.model_version": version,
            "sail.bundle_id": bundle_id,
            "sail.runtime": runtime,
            "sail.explanations": str(explanations).lower(),
        },
        # A compiled model's image installs only what ONNX Runtime serving needs, unless it
        # explains its predictions (serving.explanations): then scikit-learn, pandas and shap too.
        buildargs={
            "BUNDLE_MANIFEST_SHA256": manifest_sha256,
            "INFERENCE_DEPS": inference_deps(runtime, explanations),
            "EXPLANATIONS": str(explanations).lower(),
        },
    )
    model = params.gate.registered_model
    mlflow = tracking.client(settings)
    with tracking.reachable(settings, "recording the image on the model version"):
        mlflow.set_model_version_tag(model, version, IMAGE_TAG, ref)
    package = {
        "image": ref,
        "model": model,
        "version": version,
        "bundle_id": bundle_id,
        "runtime": runtime,
        "explanations": explanations,
        "git_commit": verdict["git_commit"],
        "key_id": key.key_id,
    }
    write_json(paths.reports / "package.json", package)
    return package


def bake_verify_key(context: BuildContext, key: VerifyKey) -> None:
    """.sail/build/trust/ becomes the image's /etc/sail/: the public key the bundle verified with.
    Nothing for HMAC (a secret) or the development key (it stays an explicit opt-in)."""
    trust = context.staging / "trust"
    trust.mkdir(parents=True, exist_ok=True)
    baked = trust / VERIFY_FILE
    if isinstance(key, HmacKey) or key.dev:
        baked.unlink(missing_ok=True)
    else:
        update(baked, key.verify_key.text().encode())
