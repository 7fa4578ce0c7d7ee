"""The gateway with vLLM engines on CPU (config/cpu-vllm.yaml), in-process and alive for this package only,
so no other set of engines shares the 2 cores while it runs."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.support.keys import API_KEY
from tests.support.models import CHAT_MODEL, SPEECH_MODEL, VISION_MODEL, VLLM_CONFIG
from tests.support.servers import LocalGateway, warm_up


@pytest.fixture(scope="package")
def vllm_gateway(speech_wav_file):
    """In-process gateway, so tests can look inside the engines (e.g. that an abort reached vLLM)."""
    with LocalGateway([API_KEY], config_path=VLLM_CONFIG) as server:
        warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        yield server


@pytest.fixture
def client(vllm_gateway) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=vllm_gateway.url + "/v1", max_retries=0, timeout=120)
