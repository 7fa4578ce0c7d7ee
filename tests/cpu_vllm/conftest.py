"""The gateway with vLLM engines on CPU (config/cpu-vllm.yaml), started once for this folder.

This folder sorts before the others on purpose: its engines are shut down before the session-wide e2e
endpoints start, so two sets of engines never share the 2 cores.
"""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.conftest import API_KEY
from tests.servers import REPO, LocalGateway, warm_up

VLLM_CONFIG = REPO / "config" / "cpu-vllm.yaml"
CHAT_MODEL = "smollm2-135m-instruct"
VISION_MODEL = "tiny-random-vlm"
SPEECH_MODEL = "whisper-tiny.en"


@pytest.fixture(scope="package")
def vllm_gateway(speech_wav_file):
    """In-process gateway, so tests can look inside the engines (e.g. that an abort reached vLLM)."""
    with LocalGateway([API_KEY], config_path=VLLM_CONFIG) as server:
        warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        yield server


@pytest.fixture
def client(vllm_gateway) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=vllm_gateway.url + "/v1", max_retries=0, timeout=120)
