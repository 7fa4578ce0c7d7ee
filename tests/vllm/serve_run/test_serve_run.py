"""`serve run config/cpu-vllm.yaml` as users start it: AsyncLLM inside Serve replicas, streamed to the client.

The server lives for this module only (the in-process vLLM engines live for their own package)."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.support.keys import API_KEY
from tests.support.media import data_uri, image_bytes
from tests.support.models import CHAT_MODEL, SPEECH_MODEL, VISION_MODEL, VLLM_CONFIG
from tests.support.servers import ServeRun, warm_up

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(tmp_path_factory, speech_wav_file):
    with ServeRun([API_KEY], tmp_path_factory.mktemp("serve-vllm") / "serve-run.log", VLLM_CONFIG) as server:
        try:
            warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        except Exception:
            print(server.log_tail())
            raise
        yield OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0, timeout=120)


def test_streamed_chat_from_vllm_in_a_serve_replica(client):
    chunks = list(client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0


def test_image_chat_from_vllm_in_a_serve_replica(client):
    content = [{"type": "text", "text": "What's in this image?"},
               {"type": "image_url", "image_url": {"url": data_uri(image_bytes("jpeg"), "image/jpeg")}}]
    r = client.chat.completions.create(model=VISION_MODEL, messages=[{"role": "user", "content": content}],
                                       max_tokens=4)
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens == 4
