"""One real endpoint per kind per session: the Ray Serve app (`serve run`) and the in-process gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import OpenAI

from serve_app.security.auth import hash_key
from tests.conftest import (ADMIN_KEY, API_KEY, ASR_ONLY_KEY, AUDIO_KEY, IMAGE_KEY, LIMITED_KEY, OTHER_KEY,
                            TOKEN_KEY)
from tests.image_server import HOST as IMAGE_HOST
from tests.image_server import ImageServer
from tests.servers import LocalGateway, ServeRun, warm_up

CHAT_MODEL = "smollm2-135m-instruct"
SPEECH_MODEL = "whisper-tiny.en"
VISION_MODEL = "tiny-random-vlm"  # random weights: tests check the image path, never what it says
ONE_SLOT_MODEL = "smollm2-one-slot"  # Serve only: one request running, one queued, the rest refused


SPEECH_REPLICAS = 2
CHUNK_SECONDS = 120


GATEWAY_REPLICAS = 2


def allow_test_images(config: dict) -> None:
    """Let the gateway fetch from the test image server's loopback address (and only that one)."""
    config["applications"][0]["args"]["limits"] = {"image_fetch": {"allow": [f"{IMAGE_HOST}/32"], "timeout_s": 3}}


def e2e_config(config: dict) -> None:
    """The CPU default with what the tests need to see: two single-threaded speech replicas and 2-minute
    chunks (so long audio really fans out), two gateway replicas (so rate limits must be shared), and named
    keys with small budgets."""
    allow_test_images(config)
    args = config["applications"][0]["args"]
    args["ingress"] = {"deployment": {"num_replicas": GATEWAY_REPLICAS}}
    args["api_keys"] = [
        {"name": "limited", "sha256": hash_key(LIMITED_KEY), "limits": {"requests_per_minute": 4}},
        {"name": "tokens", "sha256": hash_key(TOKEN_KEY), "limits": {"tokens_per_minute": 30}},
        {"name": "audio", "sha256": hash_key(AUDIO_KEY), "limits": {"audio_seconds_per_minute": 8}},
        {"name": "asr-only", "sha256": hash_key(ASR_ONLY_KEY), "models": ["whisper-tiny.en"]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "admin": True},
        {"name": "images", "sha256": hash_key(IMAGE_KEY), "limits": {"images_per_minute": 3}},
    ]
    speech = next(m for m in args["models"] if m["kind"] == "speech")
    speech["deployment"].pop("autoscaling_config", None)
    speech["deployment"]["num_replicas"] = SPEECH_REPLICAS
    speech["engine_options"]["cpu_threads"] = 1
    speech["splitting"] = {"chunk_seconds": CHUNK_SECONDS}
    chat = next(m for m in args["models"] if m["id"] == CHAT_MODEL)
    args["models"].append({**chat, "id": ONE_SLOT_MODEL, "engine_options": {**chat["engine_options"], "torch_threads": 1},
                           "deployment": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 1,
                                          "ray_actor_options": {"num_cpus": 0.1}}})


@pytest.fixture(scope="session")
def serve_endpoint(tmp_path_factory, speech_wav_file):
    log = tmp_path_factory.mktemp("serve") / "serve-run.log"
    with ServeRun([API_KEY, OTHER_KEY], log, tweak=e2e_config) as server:
        try:
            warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        except Exception:
            print(server.log_tail())
            raise
        yield server.url


@pytest.fixture(scope="session")
def local_endpoint(speech_wav_file):
    with LocalGateway([API_KEY, OTHER_KEY], tweak=allow_test_images) as server:
        warm_up(server.url, API_KEY, [CHAT_MODEL, VISION_MODEL], SPEECH_MODEL, speech_wav_file)
        yield server.url


@pytest.fixture(scope="session", params=["serve", "local"])
def endpoint(request) -> str:
    """Both ways of running the gateway must answer the same: Ray Serve (the product) and in-process."""
    return request.getfixturevalue(f"{request.param}_endpoint")


@pytest.fixture
def served_model_ids(request, endpoint) -> list[str]:
    extra = [ONE_SLOT_MODEL] if request.node.callspec.params["endpoint"] == "serve" else []
    return [CHAT_MODEL, VISION_MODEL, SPEECH_MODEL, *extra]


@pytest.fixture
def client(endpoint) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=endpoint + "/v1", max_retries=0, timeout=120)


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # screenshots, executed notebook; git ignores it


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def image_server():
    with ImageServer() as server:
        yield server
