"""Named keys, per-key limits shared by every gateway replica, rate-limit headers, usage."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.keys import (
    ADMIN_KEY,
    ALL_SECRETS,
    API_KEY,
    ASR_ONLY_KEY,
    AUDIO_KEY,
    LIMITED_KEY,
    METERED_KEY,
    OTHER_KEY,
    TOKEN_KEY,
)
from tests.support.models import CHAT_MODEL, SPEECH_MODEL
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e
CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 24}


def get_models(url: str, key: str) -> httpx.Response:
    return httpx.get(url + "/v1/models", headers={"x-api-key": key}, timeout=30)


def test_every_response_has_decreasing_rate_limit_headers(serve_endpoint):
    responses = [get_models(serve_endpoint, API_KEY) for _ in range(10)]
    for r in responses:
        for suffix in ("requests", "tokens"):
            assert r.headers[f"x-ratelimit-limit-{suffix}"].isdigit()
            assert r.headers[f"x-ratelimit-reset-{suffix}"][-1] == "s"  # "6s", "12ms", "1m30s"
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in responses]
    # 600/min refills 10 per second: ten quick requests spend more than trickles back in
    assert remaining[-1] < remaining[0] <= 600


def test_limit_is_shared_across_gateway_replicas_and_retry_after_is_honest(serve_endpoint):
    # 4 requests per minute for this key; 5 requests spread by the proxy over 2 gateway replicas.
    codes = [get_models(serve_endpoint, LIMITED_KEY).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    refused = get_models(serve_endpoint, LIMITED_KEY)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "requests per minute" in error["message"]
    assert error["type"] == "requests"  # OpenAI's rate-limit errors name what ran out
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 15
    time.sleep(wait)
    assert get_models(serve_endpoint, LIMITED_KEY).status_code == 200


def test_token_limit_counts_real_completion_usage(serve_endpoint):
    headers = {"x-api-key": TOKEN_KEY}
    first = httpx.post(serve_endpoint + "/v1/chat/completions", headers=headers, json=CHAT, timeout=120)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert used > 30  # one completion spends this key's minute
    second = httpx.post(serve_endpoint + "/v1/chat/completions", headers=headers, json=CHAT, timeout=120)
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    assert second.json()["error"]["type"] == "tokens"
    # the debt is the real usage: at 30 tokens/min (0.5 per second) it takes 2 * (used - 30) seconds to repay
    assert abs(int(second.headers["retry-after"]) - 2 * (used - 30)) <= 2


def test_audio_seconds_limit_counts_real_transcriptions(serve_endpoint, speech_wav_file):
    def transcribe() -> httpx.Response:
        return httpx.post(serve_endpoint + "/v1/audio/transcriptions", headers={"x-api-key": AUDIO_KEY},
                          data={"model": SPEECH_MODEL}, files={"file": ("a.wav", speech_wav_file.read_bytes())},
                          timeout=120)

    seconds = transcribe().json()["usage"]["seconds"]
    assert 3 <= seconds < 8
    codes = [transcribe().status_code for _ in range(2)]
    assert codes[-1] == 429  # 8 s per minute: two ~5 s files spend it


def test_model_allow_list(serve_endpoint):
    listed = get_models(serve_endpoint, ASR_ONLY_KEY).json()["data"]
    assert [m["id"] for m in listed] == [SPEECH_MODEL]
    r = httpx.post(serve_endpoint + "/v1/chat/completions", headers={"x-api-key": ASR_ONLY_KEY}, json=CHAT)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_usage_names_keys_never_secrets_and_only_admins_see_every_key(serve_endpoint):
    # Usage of two keys of its own, whichever modules ran before (alone, this module had no other keys' usage).
    for secret in (API_KEY, OTHER_KEY):
        r = httpx.post(serve_endpoint + "/v1/chat/completions", headers={"x-api-key": secret}, json=CHAT, timeout=120)
        assert r.status_code == 200, r.text
    params = {"start_time": int(time.time()) - 3600, "group_by": "key", "bucket_width": "1h"}

    def keys(secret: str) -> set[str]:
        r = httpx.get(serve_endpoint + "/v1/usage", headers={"x-api-key": secret}, params=params, timeout=30)
        assert r.status_code == 200, r.text
        for other in ALL_SECRETS:
            assert other not in r.text
        return {result["key"] for bucket in r.json()["data"] for result in bucket["results"]}

    wait_until(lambda: {"env-1", "env-2"} <= keys(ADMIN_KEY), 30, "both keys' usage listed for the admin")
    assert keys(API_KEY) == {"env-1"}  # its own usage only
    assert keys(OTHER_KEY) == {"env-2"}


def test_secrets_never_reach_logs(serve_run):
    """Every key is sent here (and in other tests); the Serve logs must show key names only."""
    for secret in ALL_SECRETS:
        httpx.get(serve_run.url + "/v1/models", headers={"x-api-key": secret}, timeout=30)
    logs = sorted((serve_run.session_dir / "logs").rglob("*.log"))
    assert any("key=env-1" in p.read_text(errors="replace") for p in logs)  # the access log is there
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret[:6]}... found in {path}"


def scrape_metrics(session: Path) -> str:
    """The Prometheus text that the Ray node of the running e2e cluster exports (on loopback)."""
    port = next(session.glob("metrics_export_port_*")).read_text().strip()
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_metrics_count_requests_tokens_and_ttft_per_key_and_model(serve_run):
    serve_endpoint = serve_run.url
    # A refusal of its own to count (1 request per minute on this key), whatever ran before.
    codes = [get_models(serve_endpoint, METERED_KEY).status_code for _ in range(2)]
    assert codes[-1] == 429
    for stream in (False, True):
        r = httpx.post(serve_endpoint + "/v1/chat/completions", headers={"x-api-key": API_KEY},
                       json={**CHAT, "stream": stream}, timeout=120)
        assert r.status_code == 200
    wanted = [
        'endpoint_requests', 'key="env-1"', f'model="{CHAT_MODEL}"', 'status="200"',
    ]
    deadline = time.monotonic() + 90  # Ray exports on an interval
    while True:
        text = scrape_metrics(serve_run.session_dir)
        lines = text.splitlines()
        requests_line = [line for line in lines if all(w in line for w in wanted) and not line.startswith("#")]
        tokens = [line for line in lines
                  if "endpoint_tokens" in line and 'kind="completion"' in line and 'key="env-1"' in line]
        limited = [line for line in lines if "endpoint_rate_limited" in line and 'key="metered"' in line]
        ttft = [line for line in lines if "endpoint_time_to_first_token_seconds" in line]
        if (requests_line and tokens and limited and ttft) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert requests_line and float(requests_line[0].rsplit(" ", 1)[1]) >= 1
    assert tokens and float(tokens[0].rsplit(" ", 1)[1]) > 0
    assert limited, "429s are counted per key"
    assert ttft
    for secret in (API_KEY, LIMITED_KEY, TOKEN_KEY):
        assert secret not in text
