import pytest

from serve_app.errors import AuthenticationFailed
from serve_app.security.auth import KeyStore, hash_key, key_hashes_from_env, presented_key


def test_both_header_styles():
    assert presented_key({"x-api-key": "k1"}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "bearer  k3 "}) == "k3"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


def test_env_keys_are_hashed_and_split():
    hashes = key_hashes_from_env({"ENDPOINT_API_KEYS": " a , b,,"})
    assert hashes == [hash_key("a"), hash_key("b")]
    assert "a" not in hashes


def test_keystore_accepts_any_configured_key_and_rejects_others():
    store = KeyStore([hash_key("a"), hash_key("b")])
    store.authenticate({"x-api-key": "b"})
    store.authenticate({"authorization": "Bearer a"})
    with pytest.raises(AuthenticationFailed) as err:
        store.authenticate({"x-api-key": "c"})
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert err.value.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(AuthenticationFailed, match="Missing"):
        store.authenticate({})


def test_keystore_refuses_to_exist_without_keys():
    with pytest.raises(ValueError, match="ENDPOINT_API_KEYS"):
        KeyStore([])
