"""The signed model bundle: a directory of files, a manifest of their hashes, and a signature
over it (Ed25519 by default, HMAC-SHA256 when the project chose it; see signing.py).

Nothing here deserializes a byte before the signature and every file hash check out, and
deserialization reads the very bytes that were checked, so a file swapped in between
cannot slip through. Bundles are written to a hidden sibling directory and renamed into
place, so a killed process never leaves something that looks like a finished bundle.
Replacing a bundle takes two renames (park the old one, move the new one in); if the second
fails the old one goes back, and if the process dies between them the next read or write
puts it back (`recover`).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from sail_pipelines.contract.ranges import Limits, training_limits
from sail_pipelines.contract.schema import Schema, parse_schema, plain
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.signing import SignKey, VerifyKey

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE.json"
METADATA = "metadata.json"
MODEL = "model.joblib"
TRANSFORMER = "transformer.joblib"
ONNX_MODEL = "model.onnx"  # the STL and model compiled for ONNX Runtime, when they convert
# the outlier detector fitted on the training split's STL output (`training/outliers.py`) for
# scikit-learn; the compiled path's is inside model.onnx (its `outlier_score` output)
OUTLIERS = "outliers.joblib"
HOLDOUT = "holdout.json"  # accepted bundles only: rows and the predictions the metric step made
# the explainer's background: training rows in STL space and each STL feature's source column
BACKGROUND = "explain_background.json"


class BundleRejected(SailError):
    """The bundle is missing, incomplete, tampered with, or signed with another key."""


def dump_object(obj: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def write_bundle(
    dest: Path, files: Mapping[str, bytes], metadata: Mapping[str, Any], key: SignKey
) -> str:
    """Write and sign a bundle atomically; return its id (the manifest digest).
    Any failure leaves the previous bundle at `dest` (or nothing, if there was none)."""
    contents = dict(files)
    contents[METADATA] = _json_bytes(metadata)
    manifest = {
        "format": 1,
        "files": {
            name: hashlib.sha256(data).hexdigest() for name, data in sorted(contents.items())
        },
    }
    manifest_bytes = _json_bytes(manifest)
    signature = {
        "algorithm": key.algorithm,
        "key_id": key.key_id,
        "signature": key.sign(manifest_bytes),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    # never the only copy of the old bundle
    parked = _leftovers(dest, "old") if dest.exists() else []
    for leftover in _leftovers(dest, "tmp") + parked:
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for name, data in [
            *contents.items(),
            (MANIFEST, manifest_bytes),
            (SIGNATURE, _json_bytes(signature)),
        ]:
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _replace_dir(tmp, dest)
    except OSError as exc:
        reason = f"{exc.strerror or exc}; the previous bundle (if any) is kept"
        raise SailError(f"could not write bundle {dest}: {reason}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return hashlib.sha256(manifest_bytes).hexdigest()[:16]


def _replace_dir(src: Path, dest: Path) -> None:
    """Park the old bundle, move the new one in, delete the old one; if the move fails, the old
    one goes back."""
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
    parked = dest.exists()
    if parked:
        dest.rename(old)
    try:
        src.rename(dest)
    except BaseException:
        if parked:
            old.rename(dest)  # if this fails too, `recover` puts it back on the next read or write
        raise
    shutil.rmtree(old, ignore_errors=True)


def _leftovers(dest: Path, kind: str) -> list[Path]:
    """Hidden siblings an interrupted write left: `tmp` (a new bundle) or `old` (a parked one)."""
    return list(dest.parent.glob(f".{glob.escape(dest.name)}.{kind}-*"))


def recover(dest: Path) -> None:
    """A process that died between `_replace_dir`'s two renames left the old bundle parked and
    nothing at `dest`: put the old bundle back. Best effort: a read-only mount stays as it is."""
    parked = _leftovers(dest, "old")
    if parked and not dest.exists():
        try:
            max(parked, key=lambda p: p.stat().st_mtime_ns).rename(dest)
        except OSError:
            pass  # read-only, or another process put it back first


def read_verified(path: Path, key: VerifyKey) -> tuple[dict[str, bytes], str]:
    """Return every signed file of the bundle and the bundle id, or raise BundleRejected saying what
    is wrong."""
    recover(path)
    if not path.is_dir():
        raise BundleRejected(f"no model bundle at {path}")
    files = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    if MANIFEST not in files or SIGNATURE not in files:
        raise BundleRejected(f"bundle {path} is incomplete: no {MANIFEST} or {SIGNATURE}")
    try:
        signature = json.loads(files.pop(SIGNATURE))
        manifest_bytes = files.pop(MANIFEST)
        manifest = json.loads(manifest_bytes)
        expected = dict(manifest["files"])
        # "hmac": the field name of bundles signed before Ed25519 became the default
        signed, algorithm = (
            str(signature.get("signature", signature.get("hmac"))),
            signature["algorithm"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleRejected(f"bundle {path}: manifest or signature is unreadable") from exc
    if algorithm != key.algorithm or not key.verify(manifest_bytes, signed):
        hint = (
            f" (signed with {algorithm} key id {signature.get('key_id')}, this key is "
            f"{key.algorithm} key id {key.key_id})"
        )
        raise BundleRejected(f"bundle {path}: signature does not match{hint}; refusing to load it")
    _check_files(path, files, expected)
    return files, hashlib.sha256(manifest_bytes).hexdigest()[:16]


def _check_files(path: Path, files: Mapping[str, bytes], expected: Mapping[str, str]) -> None:
    if set(files) != set(expected):
        odd = sorted(set(files) ^ set(expected))
        raise BundleRejected(
            f"bundle {path}: files differ from the signed manifest: {', '.join(odd)}"
        )
    for name, digest in expected.items():
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise BundleRejected(
                f"bundle {path}: {name} does not match its signed hash; refusing to load it"
            )


def verify_digests(path: Path, manifest_sha256: str) -> tuple[dict[str, bytes], str]:
    """Key-less check for an image build: the manifest is the one whose signature the host verified
    (named by its full sha256), and every file matches it. The signing key never enters a build."""
    try:
        manifest_bytes = (path / MANIFEST).read_bytes()
        files = {
            p.name: p.read_bytes()
            for p in path.iterdir()
            if p.is_file() and p.name not in (MANIFEST, SIGNATURE)
        }
        expected = json.loads(manifest_bytes)["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleRejected(f"bundle {path}: manifest is missing or unreadable") from exc
    if hashlib.sha256(manifest_bytes).hexdigest() != manifest_sha256:
        raise BundleRejected(f"bundle {path}: manifest is not the one verified before the build")
    _check_files(path, files, expected)
    return files, manifest_sha256[:16]


@dataclass(eq=False)  # one object, one bundle: the inference side caches a session per object
class LoadedBundle:
    """A verified bundle: its files, metadata, schema and limits. The pickles are unpickled
    (from the verified bytes) only when asked for, so a compiled bundle serves without
    scikit-learn or pandas; running the model is the inference side's (`inference/model.py`)."""

    path: Path
    bundle_id: str
    metadata: dict[str, Any]
    files: dict[str, bytes]

    @cached_property
    def schema(self) -> Schema:
        return parse_schema(self.metadata.get("schema"))  # none: one SailError, as for a bad one

    @cached_property
    def limits(self) -> Limits:
        """What served values are judged by (numbers, dates, categories): read once per bundle,
        not once per request or batch chunk."""
        return training_limits(self.schema, self.metadata)

    @cached_property
    def transformer(self) -> Any:
        return _unpickle(self, TRANSFORMER)

    @cached_property
    def model(self) -> Any:
        return _unpickle(self, MODEL)

    @property
    def runtime(self) -> str:
        """'onnx' when the bundle carries a compiled graph meant to serve, else 'sklearn'."""
        inference = self.metadata.get("inference") or {}
        compiled = ONNX_MODEL in self.files and inference.get("runtime") == "onnx"
        return "onnx" if compiled else "sklearn"

    @property
    def classes(self) -> list[Any]:
        """Class labels, from metadata (bundles trained before it said so: from the model)."""
        if "classes" in self.metadata or self.metadata.get("task") != "classification":
            return list(self.metadata.get("classes", []))
        return [plain(c) for c in getattr(self.model, "classes_", [])]


def load_bundle(path: Path, key: VerifyKey) -> LoadedBundle:
    return _loaded(path, *read_verified(path, key))


def load_by_digest(path: Path, manifest_sha256: str) -> LoadedBundle:
    """For an image build, which has no key: trust comes from the host's signature check,
    handed over as the digest of the manifest it verified."""
    return _loaded(path, *verify_digests(path, manifest_sha256))


def _loaded(path: Path, files: dict[str, bytes], ident: str) -> LoadedBundle:
    for name in (METADATA, MODEL, TRANSFORMER):
        if name not in files:
            raise BundleRejected(f"bundle {path}: missing {name}")
    return LoadedBundle(path, ident, json.loads(files[METADATA]), files)


def _unpickle(bundle: LoadedBundle, name: str) -> Any:
    import joblib

    return joblib.load(io.BytesIO(bundle.files[name]))


def holdout_mismatches(served: list[Any], expected: list[Any]) -> list[int]:
    """Rows whose served prediction differs from the metric step's (floats to 1e-9)."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        return a == b

    if len(served) != len(expected):
        return list(range(max(len(served), len(expected))))
    return [i for i, (a, b) in enumerate(zip(served, expected, strict=True)) if not same(a, b)]


def bundle_id(path: Path) -> str:
    """The id of a bundle on disk (digest of its manifest), without loading it."""
    recover(path)
    try:
        return hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise BundleRejected(f"no model bundle at {path}") from exc
