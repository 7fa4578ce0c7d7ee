"""A full model queue (Serve's BackPressureError) reaches the client as 503 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest
from ray.serve.exceptions import BackPressureError

from serve_app.backends import SpeechBackend, TextBackend
from serve_app.errors import ServiceUnavailable
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest


class FullQueueHandle:
    """Stands in for a DeploymentHandle whose deployment's queue is full."""

    def options(self, **_):
        return self

    def __getattr__(self, method):
        return self

    def remote(self, *args):
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8, retry_after_s=2.5)


CHAT = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}])


def test_full_queue_is_503_with_retry_after():
    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(TextBackend(FullQueueHandle()).complete(CHAT))
    assert err.value.status_code == 503 and err.value.headers["Retry-After"] == "3"
    assert err.value.code == "model_overloaded"
    with pytest.raises(ServiceUnavailable):
        asyncio.run(SpeechBackend(FullQueueHandle()).transcribe(b"", TranscriptionRequest(model="w")))
