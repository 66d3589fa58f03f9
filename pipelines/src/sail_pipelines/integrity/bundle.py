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

import functools
import glob
import hashlib
import io
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import joblib
import numpy as np
import pandas as pd

from sail_pipelines.contract import stl
from sail_pipelines.contract.schema import Schema, parse_schema, plain
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.signing import SignKey, VerifyKey

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE.json"
METADATA = "metadata.json"
MODEL = "model.joblib"
TRANSFORMER = "transformer.joblib"
HOLDOUT = "holdout.json"  # accepted bundles only: rows and the predictions the metric step made


class BundleRejected(SailError):
    """The bundle is missing, incomplete, tampered with, or signed with another key."""


def dump_object(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def write_bundle(dest: Path, files: Mapping[str, bytes], metadata: Mapping[str, Any], key: SignKey) -> str:
    """Write and sign a bundle atomically; return its id (the manifest digest).
    Any failure leaves the previous bundle at `dest` (or nothing, if there was none)."""
    contents = dict(files)
    contents[METADATA] = _json_bytes(metadata)
    manifest = {
        "format": 1,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(contents.items())},
    }
    manifest_bytes = _json_bytes(manifest)
    signature = {"algorithm": key.algorithm, "key_id": key.key_id, "signature": key.sign(manifest_bytes)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    parked = _leftovers(dest, "old") if dest.exists() else []  # never the only copy of the old bundle
    for leftover in _leftovers(dest, "tmp") + parked:
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for name, data in [*contents.items(), (MANIFEST, manifest_bytes), (SIGNATURE, _json_bytes(signature))]:
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _replace_dir(tmp, dest)
    except OSError as exc:
        reason = f"{exc.strerror or exc}; the previous bundle (if any) is kept"
        raise SailError(f"could not write bundle {dest}: {reason}") from None
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
    """Return every signed file of the bundle and the bundle id, or raise BundleRejected saying what is wrong."""
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
        signed, algorithm = str(signature.get("signature", signature.get("hmac"))), signature["algorithm"]
    except (ValueError, KeyError, TypeError):
        raise BundleRejected(f"bundle {path}: manifest or signature is unreadable") from None
    if algorithm != key.algorithm or not key.verify(manifest_bytes, signed):
        hint = f" (signed with {algorithm} key id {signature.get('key_id')}, this key is {key.algorithm} key id {key.key_id})"
        raise BundleRejected(f"bundle {path}: signature does not match{hint}; refusing to load it")
    _check_files(path, files, expected)
    return files, hashlib.sha256(manifest_bytes).hexdigest()[:16]


def _check_files(path: Path, files: Mapping[str, bytes], expected: Mapping[str, str]) -> None:
    if set(files) != set(expected):
        odd = sorted(set(files) ^ set(expected))
        raise BundleRejected(f"bundle {path}: files differ from the signed manifest: {', '.join(odd)}")
    for name, digest in expected.items():
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise BundleRejected(f"bundle {path}: {name} does not match its signed hash; refusing to load it")


def verify_digests(path: Path, manifest_sha256: str) -> tuple[dict[str, bytes], str]:
    """Key-less check for an image build: the manifest is the one whose signature the host verified
    (named by its full sha256), and every file matches it. The signing key never enters a build."""
    try:
        manifest_bytes = (path / MANIFEST).read_bytes()
        files = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name not in (MANIFEST, SIGNATURE)}
        expected = json.loads(manifest_bytes)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleRejected(f"bundle {path}: manifest is missing or unreadable") from None
    if hashlib.sha256(manifest_bytes).hexdigest() != manifest_sha256:
        raise BundleRejected(f"bundle {path}: manifest is not the one verified before the build")
    _check_files(path, files, expected)
    return files, manifest_sha256[:16]


@dataclass
class LoadedBundle:
    path: Path
    bundle_id: str
    metadata: dict[str, Any]
    transformer: Any
    model: Any
    files: dict[str, bytes]

    @functools.cached_property
    def schema(self) -> Schema:
        return parse_schema(self.metadata["schema"])

    def predict(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (and class probabilities) through the fitted Shared Transformation Layer.
        Raises NonFiniteFeatures, naming the field, when a row cannot be scored."""
        schema = self.schema
        transformed = stl.transform(self.transformer, schema, schema.prepare(features))
        predictions = self.model.predict(transformed)
        probabilities = None
        if self.metadata["task"] == "classification" and hasattr(self.model, "predict_proba"):
            probabilities = self.model.predict_proba(transformed)
        return predictions, probabilities

    @property
    def classes(self) -> list[Any]:
        return [plain(c) for c in getattr(self.model, "classes_", [])]


def load_bundle(path: Path, key: VerifyKey) -> LoadedBundle:
    return _unpickle(path, *read_verified(path, key))


def load_by_digest(path: Path, manifest_sha256: str) -> LoadedBundle:
    """For an image build, which has no key: trust comes from the host's signature check,
    handed over as the digest of the manifest it verified."""
    return _unpickle(path, *verify_digests(path, manifest_sha256))


def _unpickle(path: Path, files: dict[str, bytes], ident: str) -> LoadedBundle:
    try:
        metadata = json.loads(files[METADATA])
        transformer = joblib.load(io.BytesIO(files[TRANSFORMER]))
        model = joblib.load(io.BytesIO(files[MODEL]))
    except KeyError as exc:
        raise BundleRejected(f"bundle {path}: missing {exc.args[0]}") from None
    return LoadedBundle(path, ident, metadata, transformer, model, files)


def holdout_mismatches(served: list[Any], expected: list[Any]) -> list[int]:
    """Rows whose served prediction differs from the metric step's (floats to 1e-9)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        return a == b

    if len(served) != len(expected):
        return list(range(max(len(served), len(expected))))
    return [i for i, (a, b) in enumerate(zip(served, expected)) if not same(a, b)]


def bundle_id(path: Path) -> str:
    """The id of a bundle on disk (digest of its manifest), without loading it."""
    recover(path)
    try:
        return hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()[:16]
    except OSError:
        raise BundleRejected(f"no model bundle at {path}") from None
