"""The test API secrets, defined once: plain keys given to the service, and named keys with small budgets."""

from __future__ import annotations

from serve_app.security.auth import hash_key

API_KEY = "test-secret-" + "5f2c9a1e7b3d4c60"
OTHER_KEY = "second-secret-" + "a81b9c"
# Named keys the e2e Serve config declares (by digest), each with a small budget to run into.
LIMITED_KEY = "limited-" + "77c1"  # 4 requests per minute
TOKEN_KEY = "tokens-" + "91aa"  # 30 tokens per minute
AUDIO_KEY = "audio-" + "3b02"  # 8 audio seconds per minute
ASR_ONLY_KEY = "asr-only-" + "e5d0"  # may use the speech model only
ADMIN_KEY = "admin-" + "0f4e"  # may read /v1/usage
IMAGE_KEY = "images-" + "c7d1"  # 3 images per minute
METERED_KEY = "metered-" + "4d9e"  # 1 request per minute: the metrics test's own 429
ALL_SECRETS = (API_KEY, OTHER_KEY, LIMITED_KEY, TOKEN_KEY, AUDIO_KEY, ASR_ONLY_KEY, ADMIN_KEY, IMAGE_KEY, METERED_KEY)


def named_keys(speech_model: str) -> list[dict]:
    """The `api_keys` entries of the e2e config."""
    return [
        {"name": "limited", "sha256": hash_key(LIMITED_KEY), "limits": {"requests_per_minute": 4}},
        {"name": "tokens", "sha256": hash_key(TOKEN_KEY), "limits": {"tokens_per_minute": 30}},
        {"name": "audio", "sha256": hash_key(AUDIO_KEY), "limits": {"audio_seconds_per_minute": 8}},
        {"name": "asr-only", "sha256": hash_key(ASR_ONLY_KEY), "models": [speech_model]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "admin": True},
        {"name": "images", "sha256": hash_key(IMAGE_KEY), "limits": {"images_per_minute": 3}},
        {"name": "metered", "sha256": hash_key(METERED_KEY), "limits": {"requests_per_minute": 1}},
    ]
