"""A model whose bounded queue is full answers 503 with Retry-After at once, and recovers."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.support.keys import API_KEY
from tests.support.models import ONE_SLOT_MODEL

pytestmark = pytest.mark.e2e
LONG_CHAT = {"model": ONE_SLOT_MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}],
             "max_tokens": 96, "temperature": 0}


def post_chat(url: str, body: dict) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.post(url + "/v1/chat/completions", headers={"x-api-key": API_KEY}, json=body, timeout=300)
    return r, time.monotonic() - started


def test_full_queue_is_503_with_retry_after_not_a_hang(serve_endpoint):
    # One running + one queued per gateway replica (Serve bounds the queue per caller); 2 gateway replicas,
    # so at most 4 of these 8 simultaneous requests can be admitted and the rest must be turned away.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post_chat(serve_endpoint, LONG_CHAT), range(8)))
    served = [r for r, _ in results if r.status_code == 200]
    refused = [(r, took) for r, took in results if r.status_code == 503]
    assert len(served) + len(refused) == 8, [r.text for r, _ in results]
    assert 1 <= len(served) <= 4 and len(refused) >= 4
    slowest_served = max(took for r, took in results if r.status_code == 200)
    for r, took in refused:
        error = r.json()["error"]
        assert error["code"] == "model_overloaded" and ONE_SLOT_MODEL in error["message"]
        assert error["type"] == "server_error"
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-request-id"]
        assert took < slowest_served  # refused up front, not after waiting its turn
    # the queue drained: the model serves again
    again, _ = post_chat(serve_endpoint, {**LONG_CHAT, "max_tokens": 4})
    assert again.status_code == 200


def test_full_queue_refuses_streams_with_503_before_any_event(serve_endpoint):
    body = LONG_CHAT | {"stream": True}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post_chat(serve_endpoint, body), range(8)))
    codes = sorted(r.status_code for r, _ in results)
    assert 503 in codes and 200 in codes and set(codes) == {200, 503}
    for r, _ in results:
        if r.status_code == 503:
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"]["code"] == "model_overloaded" and int(r.headers["retry-after"]) >= 1
        else:
            assert r.text.rstrip().endswith("data: [DONE]")
