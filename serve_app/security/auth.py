"""API secrets: read from the environment or config, kept only as sha256 digests, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Mapping

from serve_app.errors import AuthenticationFailed

ENV_VAR = "ENDPOINT_API_KEYS"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hashes_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    return [hash_key(k.strip()) for k in environ.get(ENV_VAR, "").split(",") if k.strip()]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The secret from `x-api-key: K` or `Authorization: Bearer K` (the OpenAI SDKs send the latter)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class KeyStore:
    def __init__(self, digests: list[str]) -> None:
        if not digests:
            raise ValueError(f"no API keys configured: set {ENV_VAR} (comma-separated) or api_key_hashes")
        self._digests = [bytes.fromhex(d) for d in dict.fromkeys(digests)]

    def authenticate(self, headers: Mapping[str, str]) -> None:
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(
                "Missing API secret. Send it as `x-api-key: <SECRET>` or `Authorization: Bearer <SECRET>`."
            )
        digest = hashlib.sha256(key.encode()).digest()
        # Compare against every digest so the timing does not reveal which (or whether one) matched early.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise AuthenticationFailed()
