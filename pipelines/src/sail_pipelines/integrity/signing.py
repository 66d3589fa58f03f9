"""HMAC-SHA256 signing key handling.

The key never leaves this module except as a short key id derived from it, so metadata,
logs and reports can say which key signed a bundle without revealing the key.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from dataclasses import dataclass

from sail_pipelines.config import Settings
from sail_pipelines.errors import SailError

# Public on purpose: it only exists so a laptop demo runs without a secret.
DEV_KEY = b"sail-pipelines-development-key-do-not-use-in-production"


@dataclass(frozen=True)
class SigningKey:
    secret: bytes
    dev: bool

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, b"sail-key-id", hashlib.sha256).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(data), signature)

    def __repr__(self) -> str:  # keep the secret out of any accidental log line
        return f"SigningKey(key_id={self.key_id!r}, dev={self.dev})"


def resolve_key(settings: Settings) -> SigningKey:
    if settings.signing_key:
        return SigningKey(settings.signing_key, dev=False)
    if settings.allow_dev_key:
        print("sail: warning: signing with the public development key (SAIL_ALLOW_DEV_KEY=1)", file=sys.stderr)
        return SigningKey(DEV_KEY, dev=True)
    raise SailError(
        "SAIL_SIGNING_KEY is not set: export a secret (e.g. `openssl rand -hex 32`), "
        "or opt into the public development key with SAIL_ALLOW_DEV_KEY=1"
    )
