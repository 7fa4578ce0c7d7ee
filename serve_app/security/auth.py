"""API secrets: named keys kept only as sha256 digests, checked in constant time; never logged."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from serve_app.config import APIKey, Budgets, RateLimits
from serve_app.errors import AuthenticationFailed, ModelNotFound

ENV_VAR = "ENDPOINT_API_KEYS"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_from_secrets(secrets: list[str]) -> list[APIKey]:
    """Plain secrets as keys named env-1, env-2, ... (only their digests are kept)."""
    return [APIKey(name=f"env-{i}", sha256=hash_key(k)) for i, k in enumerate(secrets, start=1)]


def keys_from_env(environ: Mapping[str, str] = os.environ) -> list[APIKey]:
    """The ENDPOINT_API_KEYS secrets (comma-separated) as keys."""
    return keys_from_secrets([k.strip() for k in environ.get(ENV_VAR, "").split(",") if k.strip()])


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The secret from `x-api-key: K` or `Authorization: Bearer K` (the OpenAI SDKs send the latter)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name (never its secret), what it may use and its limits."""

    name: str
    models: frozenset[str] | None
    limits: RateLimits
    admin: bool
    budgets: Budgets = Budgets()

    def require_model(self, model_id: str) -> None:
        if self.models is not None and model_id not in self.models:
            raise ModelNotFound(model_id)  # same answer as a model that does not exist


class KeyStore:
    def __init__(self, keys: list[APIKey], default_limits: RateLimits | None = None,
                 default_budgets: Budgets | None = None) -> None:
        if not keys:
            raise ValueError(f"no API keys configured: set {ENV_VAR} (comma-separated) or api_keys")
        names = [k.name for k in keys]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:  # two secrets under one name would be one tenant: each would see the other's files
            raise ValueError(f"API key names must be unique; {', '.join(clashes)} is used twice (the secrets of "
                             f"{ENV_VAR} are named env-1, env-2, ... in order)")
        default_limits = default_limits or RateLimits()
        self._default_budgets = default_budgets or Budgets()
        self._keys = [(bytes.fromhex(k.sha256), k, (k.limits or RateLimits()).merged_over(default_limits))
                      for k in keys]
        self._by_name = {k.name: (k, limits) for _, k, limits in self._keys}

    def _caller(self, key: APIKey, limits: RateLimits) -> Caller:
        if key.expires_at is not None and _utc(key.expires_at) <= datetime.now(UTC):
            raise AuthenticationFailed("This API secret has expired.")
        budgets = (key.budgets or Budgets()).merged_over(self._default_budgets)
        return Caller(key.name, frozenset(key.models) if key.models is not None else None, limits, key.admin,
                      budgets)

    def by_name(self, name: str) -> Caller:
        """The caller a batch was created by (the batch runner acts for it; it holds no secret)."""
        if name not in self._by_name:
            raise AuthenticationFailed(f"The key `{name}` that created this batch no longer exists.")
        return self._caller(*self._by_name[name])

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        secret = presented_key(headers)
        if secret is None:
            raise AuthenticationFailed(
                "Missing API secret. Send it as `x-api-key: <SECRET>` or `Authorization: Bearer <SECRET>`."
            )
        digest = hashlib.sha256(secret.encode()).digest()
        # Compare against every digest so the timing does not reveal which (or whether one) matched early.
        found = None
        for known, key, limits in self._keys:
            if hmac.compare_digest(digest, known) and found is None:
                found = (key, limits)
        if found is None:
            raise AuthenticationFailed()
        return self._caller(*found)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
