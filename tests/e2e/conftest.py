"""One real endpoint per kind per session: the Ray Serve app (`serve run`) and the in-process gateway."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.conftest import API_KEY, OTHER_KEY
from tests.servers import LocalGateway, ServeRun, warm_up

CHAT_MODEL = "smollm2-135m-instruct"
SPEECH_MODEL = "whisper-tiny.en"


SPEECH_REPLICAS = 2
CHUNK_SECONDS = 120


def two_speech_replicas(config: dict) -> None:
    """The CPU default, with two single-threaded speech replicas and 2-minute chunks, so that long-audio tests
    really fan out (the default autoscales 1 -> 2 replicas only under load)."""
    speech = next(m for m in config["applications"][0]["args"]["models"] if m["kind"] == "speech")
    speech["deployment"].pop("autoscaling_config", None)
    speech["deployment"]["num_replicas"] = SPEECH_REPLICAS
    speech["engine_options"]["cpu_threads"] = 1
    speech["splitting"] = {"chunk_seconds": CHUNK_SECONDS}


@pytest.fixture(scope="session")
def serve_endpoint(tmp_path_factory, speech_wav_file):
    log = tmp_path_factory.mktemp("serve") / "serve-run.log"
    with ServeRun([API_KEY, OTHER_KEY], log, tweak=two_speech_replicas) as server:
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
