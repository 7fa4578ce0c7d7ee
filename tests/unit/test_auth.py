from datetime import UTC, datetime, timedelta

import pytest

from serve_app.config import APIKey, RateLimits
from serve_app.errors import AuthenticationFailed, ModelNotFound
from serve_app.security.auth import KeyStore, hash_key, keys_from_env, presented_key


def test_both_header_styles():
    assert presented_key({"x-api-key": "k1"}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "bearer  k3 "}) == "k3"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


def key(name: str, secret: str, **kw) -> APIKey:
    return APIKey(name=name, sha256=hash_key(secret), **kw)


def test_env_keys_are_hashed_split_and_named():
    keys = keys_from_env({"ENDPOINT_API_KEYS": " a , b,,"})
    assert [(k.name, k.sha256) for k in keys] == [("env-1", hash_key("a")), ("env-2", hash_key("b"))]


def test_keystore_accepts_any_configured_key_and_rejects_others():
    store = KeyStore([key("one", "a"), key("two", "b")])
    assert store.authenticate({"x-api-key": "b"}).name == "two"
    assert store.authenticate({"authorization": "Bearer a"}).name == "one"
    with pytest.raises(AuthenticationFailed) as err:
        store.authenticate({"x-api-key": "c"})
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert err.value.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(AuthenticationFailed, match="Missing"):
        store.authenticate({})


def test_expired_key_is_401_and_model_allow_list_hides_others():
    past = datetime.now(UTC) - timedelta(minutes=1)
    store = KeyStore([key("old", "a", expires_at=past), key("asr", "b", models=["whisper"])])
    with pytest.raises(AuthenticationFailed, match="expired"):
        store.authenticate({"x-api-key": "a"})
    caller = store.authenticate({"x-api-key": "b"})
    caller.require_model("whisper")
    with pytest.raises(ModelNotFound):
        caller.require_model("chat")


def test_key_limits_override_defaults():
    store = KeyStore([key("k", "a", limits=RateLimits(requests_per_minute=5))],
                     RateLimits(requests_per_minute=100, tokens_per_minute=1000))
    limits = store.authenticate({"x-api-key": "a"}).limits
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (5, 1000)


def test_keystore_refuses_to_exist_without_keys():
    with pytest.raises(ValueError, match="ENDPOINT_API_KEYS"):
        KeyStore([])
