"""The two endpoints the API tests run against, alive for this package only: the Ray Serve app (`serve run`,
the product) and the same gateway in-process; both must answer alike."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.support.e2e_config import allow_test_images, e2e_config
from tests.support.keys import API_KEY, OTHER_KEY
from tests.support.models import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    MULTILINGUAL_SPEECH_MODEL,
    ONE_SLOT_MODEL,
    REPO,
    SPEECH_MODEL,
    VISION_MODEL,
)
from tests.support.servers import LocalGateway, ServeRun, warm_up


@pytest.fixture(scope="package")
def serve_run(tmp_path_factory, speech_wav_file):
    log = tmp_path_factory.mktemp("serve") / "serve-run.log"
    with ServeRun([API_KEY, OTHER_KEY], log, tweak=e2e_config) as server:
        try:
            warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        except Exception:
            print(server.log_tail())
            raise
        yield server


@pytest.fixture(scope="package")
def serve_endpoint(serve_run) -> str:
    return serve_run.url


@pytest.fixture(scope="package")
def local_endpoint(speech_wav_file):
    with LocalGateway([API_KEY, OTHER_KEY], tweak=allow_test_images) as server:
        warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        yield server.url


@pytest.fixture(scope="package", params=["serve", "local"])
def endpoint(request) -> str:
    """Both ways of running the gateway must answer the same: Ray Serve (the product) and in-process."""
    return request.getfixturevalue(f"{request.param}_endpoint")


@pytest.fixture
def served_model_ids(request, endpoint) -> list[str]:
    extra = [ONE_SLOT_MODEL] if request.node.callspec.params["endpoint"] == "serve" else []
    return [CHAT_MODEL, VISION_MODEL, EMBEDDING_MODEL, SPEECH_MODEL, MULTILINGUAL_SPEECH_MODEL, *extra]


@pytest.fixture
def client(endpoint) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=endpoint + "/v1", max_retries=0, timeout=120)


@pytest.fixture
def http(endpoint):
    with httpx.Client(base_url=endpoint, headers={"x-api-key": API_KEY}, timeout=300) as c:
        yield c


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots and the executed notebook (git ignores the folder)."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
