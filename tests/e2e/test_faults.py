"""Faults under `serve run`: a model replica killed mid-stream, and the shared rate limiter killed."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from tests.support.keys import API_KEY
from tests.support.models import ONE_SLOT_MODEL
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e
HEADERS = {"x-api-key": API_KEY}


def chat(url: str, **extra) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=HEADERS, timeout=60, json={
        "model": ONE_SLOT_MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 8, **extra})


def test_a_replica_killed_mid_stream_ends_the_stream_with_a_typed_error_and_the_model_recovers(serve_run):
    url = serve_run.url
    [pid] = serve_run.replica_pids("model-" + ONE_SLOT_MODEL)
    events = []
    with httpx.stream("POST", url + "/v1/chat/completions", headers=HEADERS, timeout=120, json={
            "model": ONE_SLOT_MODEL, "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if len(events) == 3:  # tokens are flowing: now the replica dies
                os.kill(pid, signal.SIGKILL)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "model_unavailable" and error["type"] == "server_error"
    started = time.monotonic()
    wait_until(lambda: chat(url).status_code == 200, 60, "the model serving again after its replica died", 1)
    assert time.monotonic() - started < 30


def test_a_killed_rate_limiter_never_hangs_a_request(serve_run):
    """The requests span more than the gateway's view of the key lives (local_admission.VIEW_TTL_S), so they ask
    the shared limiter while it is dead or restarting: which of the two each meets is up to Serve's controller,
    hence 200 or 503, but never a hang."""
    url = serve_run.url
    [pid] = serve_run.replica_pids("rate-limiter")
    os.kill(pid, signal.SIGKILL)
    for _ in range(10):
        started = time.monotonic()
        r = httpx.get(url + "/v1/models", headers=HEADERS, timeout=30)
        assert time.monotonic() - started < 15
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "rate_limiter_unavailable" and r.headers["retry-after"]
        else:
            assert r.status_code == 200
        time.sleep(0.5)
    wait_until(lambda: httpx.get(url + "/v1/models", headers=HEADERS, timeout=30).status_code == 200, 60,
               "the rate limiter answering again", 1)
