"""The e2e variant of the CPU default: what the end-to-end tests need to see happen."""

from __future__ import annotations

from tests.support.image_server import HOST as IMAGE_HOST
from tests.support.keys import named_keys
from tests.support.models import CHAT_MODEL, MULTILINGUAL_SPEECH_MODEL, ONE_SLOT_MODEL, SPEECH_MODEL

SPEECH_REPLICAS = 2
CHUNK_SECONDS = 120
GATEWAY_REPLICAS = 2


def allow_test_images(config: dict) -> None:
    """Let the gateway fetch from the test image server's loopback address (and only that one)."""
    config["applications"][0]["args"]["limits"] = {"image_fetch": {"allow": [f"{IMAGE_HOST}/32"], "timeout_s": 3}}


def e2e_config(config: dict) -> None:
    """The CPU default with two single-threaded English speech replicas and 2-minute chunks (so long audio
    really fans out), one single-threaded multilingual speech replica, two gateway replicas (so rate limits
    must be shared), named keys with small budgets, and a one-slot chat model to overload."""
    allow_test_images(config)
    args = config["applications"][0]["args"]
    args["ingress"] = {"deployment": {"num_replicas": GATEWAY_REPLICAS}}
    speech = next(m for m in args["models"] if m["id"] == SPEECH_MODEL)
    args["api_keys"] = named_keys(speech["id"])
    speech["deployment"].pop("autoscaling_config", None)
    speech["deployment"]["num_replicas"] = SPEECH_REPLICAS
    speech["deployment"]["ray_actor_options"] = {"num_cpus": 0.25}  # every model must fit Ray's 2 CPUs
    speech["engine_options"]["cpu_threads"] = 1
    speech["splitting"] = {"chunk_seconds": CHUNK_SECONDS}
    multilingual = next(m for m in args["models"] if m["id"] == MULTILINGUAL_SPEECH_MODEL)
    multilingual["deployment"].pop("autoscaling_config", None)
    multilingual["deployment"]["num_replicas"] = 1
    multilingual["engine_options"]["cpu_threads"] = 1
    chat = next(m for m in args["models"] if m["id"] == CHAT_MODEL)
    # no response cache: the overload and fault tests need every request to reach its one slot
    chat_without_cache = {k: v for k, v in chat.items() if k != "response_cache"}
    args["models"].append({**chat_without_cache, "id": ONE_SLOT_MODEL,
                           "engine_options": {**chat["engine_options"], "torch_threads": 1},
                           "deployment": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 1,
                                          # no CPU reserved: a replacement always fits (test_faults kills it)
                                          "ray_actor_options": {"num_cpus": 0}}})
