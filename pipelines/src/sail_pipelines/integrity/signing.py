"""Signing keys: Ed25519 key pairs by default (through `cryptography`), HMAC-SHA256 on request.

Ed25519 splits the key in two. CI signs with the private key (SAIL_SIGNING_KEY); everything
that only verifies (serve, predict, smoke, the inference image, Kubernetes pods) holds the
public key (SAIL_VERIFY_KEY, or the one baked into the image), so a serving credential cannot
forge a bundle. HMAC-SHA256 (params.yaml `signing: {scheme: hmac-sha256}`) keeps the SAIL
paper's one shared secret, which every verifier must then hold.

The promotion audit chain has a key pair of its own (SAIL_AUDIT_KEY / SAIL_AUDIT_VERIFY_KEY),
so neither a serving credential nor the bundle signing key can write or rewrite history.

A key id is the sha256 fingerprint of the public key (of the secret, for HMAC): messages,
metadata and reports name keys by it and never show a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sail_pipelines.config import SIGNING_SCHEMES, Settings
from sail_pipelines.errors import SailError

ED25519, HMAC_SHA256 = SIGNING_SCHEMES
SIGNING_FILE, VERIFY_FILE = "signing.key", "verify.key"
# Where `sail package` puts the public key inside the inference image (absent on a host).
BAKED_VERIFY_KEY = Path("/etc/sail/verify.key")

# Public on purpose: these pairs only exist so a laptop demo runs without secrets, and only
# SAIL_ALLOW_DEV_KEY=1 lets them in.
_DEV_SEEDS = {
    "signing": hashlib.sha256(
        b"sail-pipelines public development signing key, never for production"
    ).digest(),
    "audit": hashlib.sha256(
        b"sail-pipelines public development audit key, never for production"
    ).digest(),
}
_PEM = re.compile(r"\s*-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]+?)-----END \1-----\s*")


def _fingerprint(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class Ed25519Verifier:
    """An Ed25519 public key: checks signatures, cannot make them."""

    public: Ed25519PublicKey
    dev: bool = False
    algorithm = "Ed25519"

    @property
    def key_id(self) -> str:
        return _fingerprint(
            self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    def verify(self, data: bytes, signature: str) -> bool:
        try:
            self.public.verify(bytes.fromhex(signature), data)
        except (InvalidSignature, ValueError):
            return False
        return True

    @property
    def verify_key(self) -> "Ed25519Verifier":
        return self

    def text(self) -> str:
        """The key as `sail keygen` writes verify.key (and SAIL_VERIFY_KEY takes it)."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def __repr__(self) -> str:
        return f"Ed25519Verifier(key_id={self.key_id!r}, dev={self.dev})"


@dataclass(frozen=True, repr=False)
class Ed25519Signer:
    """An Ed25519 private key; its public half verifies what it signs."""

    private: Ed25519PrivateKey
    dev: bool = False
    algorithm = "Ed25519"

    @property
    def verify_key(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.private.public_key(), self.dev)

    @property
    def key_id(self) -> str:
        return self.verify_key.key_id

    def sign(self, data: bytes) -> str:
        return self.private.sign(data).hex()

    def verify(self, data: bytes, signature: str) -> bool:
        return self.verify_key.verify(data, signature)

    def text(self) -> str:
        """The key as `sail keygen` writes signing.key (and SAIL_SIGNING_KEY takes it)."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def __repr__(self) -> str:  # keep the key out of any accidental log line
        return f"Ed25519Signer(key_id={self.key_id!r}, dev={self.dev})"


@dataclass(frozen=True, repr=False)
class HmacKey:
    """One shared secret that both signs and verifies (the SAIL paper's scheme)."""

    secret: bytes
    dev: bool = False
    algorithm = "HMAC-SHA256"

    @property
    def verify_key(self) -> "HmacKey":
        return self

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, b"sail-key-id", hashlib.sha256).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(data), signature)

    def __repr__(self) -> str:
        return f"HmacKey(key_id={self.key_id!r}, dev={self.dev})"


SignKey = Union[Ed25519Signer, HmacKey]
VerifyKey = Union[Ed25519Verifier, Ed25519Signer, HmacKey]  # a signer verifies too


def _pem(text: str) -> bytes | None:
    """PEM text with its line breaks restored: a key pasted into a one-line secret field (a
    Jenkins secret text, say) loses them."""
    match = _PEM.fullmatch(text)
    if not match:
        return None
    body = "\n".join(textwrap.wrap("".join(match[2].split()), 64))
    return f"-----BEGIN {match[1]}-----\n{body}\n-----END {match[1]}-----\n".encode()


def looks_like_pem(text: str) -> bool:
    return _pem(text) is not None


def private_key(text: str, source: str) -> Ed25519Signer:
    pem = _pem(text)
    try:
        key = serialization.load_pem_private_key(pem, password=None) if pem else None
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise SailError(
            f"{source} is not an Ed25519 private key (the text of a signing.key that `sail "
            "keygen` writes)"
        )
    return Ed25519Signer(key)


def public_key(text: str, source: str) -> Ed25519Verifier:
    pem = _pem(text)
    try:
        key = serialization.load_pem_public_key(pem) if pem else None
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise SailError(
            f"{source} is not an Ed25519 public key (the text of a verify.key that `sail keygen` "
            "writes)"
        )
    return Ed25519Verifier(key)


def dev_pair(purpose: str = "signing") -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(_DEV_SEEDS[purpose]), dev=True)


def generate() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.generate())


def keygen(directory: Path) -> dict[str, str]:
    """Write a new pair: DIR/signing.key (private, mode 0600) and DIR/verify.key (public).
    Existing keys are never overwritten: losing one would orphan everything it signed."""
    signer = generate()
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text, mode in (
        (SIGNING_FILE, signer.text(), 0o600),
        (VERIFY_FILE, signer.verify_key.text(), 0o644),
    ):
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError as exc:
            raise SailError(
                f"{path} exists: refusing to overwrite a key (choose another directory)"
            ) from exc
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        written[name.replace(".", "_")] = str(path)
    return {**written, "key_id": signer.key_id}


def _warn_dev(what: str) -> None:
    print(
        f"sail: warning: {what} with the public development key (SAIL_ALLOW_DEV_KEY=1)",
        file=sys.stderr,
    )


def signing_key(settings: Settings, scheme: str) -> SignKey:
    """The key that signs bundles (train, gate) and images (publish), for the project's scheme."""
    text = settings.signing_key.decode() if settings.signing_key else None
    if scheme == HMAC_SHA256:
        if text is None:
            raise SailError(
                "SAIL_SIGNING_KEY is not set: params.yaml signs with hmac-sha256, export a secret "
                "(e.g. `openssl rand -hex 32`); the development key is an Ed25519 pair"
            )
        if looks_like_pem(text):
            raise SailError(
                "SAIL_SIGNING_KEY is a PEM key, but params.yaml signs with hmac-sha256: "
                "use a random secret, or drop `signing.scheme` to sign with Ed25519"
            )
        return HmacKey(text.encode())
    if text is not None:
        if not looks_like_pem(text):
            raise SailError(
                "SAIL_SIGNING_KEY is not an Ed25519 private key: create a pair with `sail keygen "
                "DIR` and "
                'export SAIL_SIGNING_KEY="$(cat DIR/signing.key)", or set `signing: {scheme: '
                "hmac-sha256}` in params.yaml for a shared secret"
            )
        return private_key(text, "SAIL_SIGNING_KEY")
    if settings.allow_dev_key:
        _warn_dev("signing")
        return dev_pair()
    raise SailError(
        "SAIL_SIGNING_KEY is not set: create a key pair with `sail keygen DIR` and export "
        'SAIL_SIGNING_KEY="$(cat DIR/signing.key)", or opt into the public development key with '
        "SAIL_ALLOW_DEV_KEY=1"
    )


def verify_key(
    settings: Settings, scheme: str | None = None, baked: Path = BAKED_VERIFY_KEY
) -> VerifyKey:
    """The key that checks bundles. In order: SAIL_VERIFY_KEY (the public key; for HMAC the shared
    secret), the public half of SAIL_SIGNING_KEY (or the HMAC secret), the key baked into the
    inference image, the development key. `scheme` is params.yaml's; None (in the image) goes by
    the key given."""
    if settings.verify_key:
        text = settings.verify_key
        if (scheme or (ED25519 if looks_like_pem(text) else HMAC_SHA256)) == ED25519:
            return public_key(text, "SAIL_VERIFY_KEY")
        if looks_like_pem(text):
            raise SailError(
                "SAIL_VERIFY_KEY is a PEM key, but params.yaml signs with hmac-sha256: "
                "HMAC verifiers hold the shared secret"
            )
        return HmacKey(text.encode())
    if settings.signing_key:
        guessed = ED25519 if looks_like_pem(settings.signing_key.decode()) else HMAC_SHA256
        return signing_key(settings, scheme or guessed).verify_key
    if scheme != HMAC_SHA256 and baked.is_file():
        return public_key(baked.read_text(), str(baked))
    if settings.allow_dev_key and scheme != HMAC_SHA256:
        _warn_dev("verifying")
        return dev_pair().verify_key
    raise SailError(
        "SAIL_VERIFY_KEY is not set: export the public key (the verify.key of `sail keygen`), "
        "or opt into the public development key with SAIL_ALLOW_DEV_KEY=1"
    )


def serving_env(key: VerifyKey) -> dict[str, str]:
    """What a serving process (a local `sail serve`, a container) needs to check bundles with
    `key`, and nothing more: the public key, never the private one. With HMAC it is the shared
    secret, which is that scheme's price."""
    if isinstance(key, HmacKey):
        return {"SAIL_VERIFY_KEY": key.secret.decode()}
    if key.dev:
        return {"SAIL_ALLOW_DEV_KEY": "1"}
    return {"SAIL_VERIFY_KEY": key.verify_key.text()}


def audit_key(settings: Settings) -> Ed25519Signer:
    """The private key that seals promotion and rollback records (only the promoting job holds
    it); when SAIL_AUDIT_VERIFY_KEY is also set, it must be that key's private half."""
    if settings.audit_key:
        signer = private_key(settings.audit_key, "SAIL_AUDIT_KEY")
    elif settings.allow_dev_key:
        _warn_dev("sealing the audit record")
        signer = dev_pair("audit")
    else:
        raise SailError(
            "SAIL_AUDIT_KEY is not set: promotion and rollback seal the audit history with a key "
            "pair "
            'of their own (`sail keygen DIR`, then SAIL_AUDIT_KEY="$(cat DIR/signing.key)")'
        )
    if settings.audit_verify_key:
        public = public_key(settings.audit_verify_key, "SAIL_AUDIT_VERIFY_KEY")
        if public.key_id != signer.key_id:
            raise SailError(
                f"SAIL_AUDIT_KEY (key id {signer.key_id}) is not the private half of "
                f"SAIL_AUDIT_VERIFY_KEY (key id {public.key_id})"
            )
    return signer
