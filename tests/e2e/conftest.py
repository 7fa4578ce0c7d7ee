"""One real endpoint per kind per session: the Ray Serve app (`serve run`) and the in-process gateway."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.conftest import API_KEY, OTHER_KEY
from tests.servers import LocalGateway, ServeRun, warm_up

CHAT_MODEL = "smollm2-135m-instruct"
SPEECH_MODEL = "whisper-tiny.en"


@pytest.fixture(scope="session")
def serve_endpoint(tmp_path_factory, speech_wav_file):
    log = tmp_path_factory.mktemp("serve") / "serve-run.log"
    with ServeRun([API_KEY, OTHER_KEY], log) as server:
        try:
            warm_up(server.url, API_KEY, CHAT_MODEL, SPEECH_MODEL, speech_wav_file)
        except Exception:
            print(server.log_tail())
            raise
        yield server.url


@pytest.fixture(scope="session")
def local_endpoint(speech_wav_file):
    with LocalGateway([API_KEY, OTHER_KEY]) as server:
        warm_up(server.url, API_KEY, CHAT_MODEL, SPEECH_MODEL, speech_wav_file)
        yield server.url


@pytest.fixture(scope="session", params=["serve", "local"])
def endpoint(request) -> str:
    """Both ways of running the gateway must answer the same: Ray Serve (the product) and in-process."""
    return request.getfixturevalue(f"{request.param}_endpoint")


@pytest.fixture
def client(endpoint) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=endpoint + "/v1", max_retries=0, timeout=120)
