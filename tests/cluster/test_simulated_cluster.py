"""The real application on a simulated multi-node cluster: a CPU-only head and two workers with fake GPUs.

The model deployment asks for `num_gpus: 1` but runs the CPU transformers engine, so placement is real Ray
scheduling: its replicas must land on the GPU workers only, scale 1 -> 2 under sustained load and back to 1
when idle; a `min_replicas: 0` model starts on its first request, which is held rather than failed.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.support.keys import API_KEY
from tests.support.models import CHAT_MODEL, app_args
from tests.support.servers import answers_200, free_port, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]
GPU_MODEL = "smollm2-on-gpu"
ZERO_MODEL = "smollm2-scale-to-zero"
APP = "endpoint"


def cluster_args() -> dict:
    """config/cpu.yaml's SmolLM2 twice: once on a (fake) GPU with fast autoscaling, once scaling to zero."""
    args = app_args()
    chat = next(m for m in args["models"] if m["id"] == CHAT_MODEL)
    options = {**chat["engine_options"], "torch_threads": 1}
    gpu = {**chat, "id": GPU_MODEL, "engine_options": options, "deployment": {
        "max_ongoing_requests": 8,
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                               "upscale_delay_s": 1, "downscale_delay_s": 4},
        "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 1}}}
    zero = {**chat, "id": ZERO_MODEL, "engine_options": options, "cold_start": {"max_hold_s": 240},
            "deployment": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 600},
                           "ray_actor_options": {"num_cpus": 0.1}}}
    return {**args, "models": [gpu, zero], "ingress": {"deployment": {"num_replicas": 1}}}


@pytest.fixture(scope="module")
def cluster(monkeypatch_module):
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serve_app.app import build_app

    monkeypatch_module.setenv("ENDPOINT_API_KEYS", API_KEY)
    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    workers = [sim.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    ray.init(address=sim.address)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(cluster_args()), name=APP, route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        wait_until(answers_200(url + "/health"), 300, "simulated cluster /health", interval=1)
        yield url, {w.node_id for w in workers}, sim.head_node.node_id
    finally:
        serve.shutdown()
        ray.shutdown()
        sim.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def replica_nodes(deployment: str) -> list[str]:
    """Node ids of the deployment's live replica actors."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("class_name", "=", f"ServeReplica:{APP}:{deployment}"), ("state", "=", "ALIVE")],
                         detail=True)
    return [a.node_id for a in actors]


def running(deployment: str) -> int:
    from ray import serve

    return serve.status().applications[APP].deployments[deployment].replica_states.get("RUNNING", 0)


def chat(url: str, model: str, max_tokens: int = 8) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"x-api-key": API_KEY}, timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": max_tokens})


def test_gpu_replicas_land_on_gpu_workers_and_the_gateway_takes_no_gpu(cluster):
    url, gpu_nodes, head = cluster
    assert chat(url, GPU_MODEL).status_code == 200
    nodes = replica_nodes("model-" + GPU_MODEL)
    assert len(nodes) == 1 and set(nodes) <= gpu_nodes
    from ray.util.state import list_actors

    gateway = list_actors(filters=[("class_name", "=", f"ServeReplica:{APP}:gateway")], detail=True)
    assert gateway and all(not a.required_resources.get("GPU") for a in gateway)


def test_scale_to_zero_model_is_cold_then_serves_its_first_request(cluster):
    url, _, _ = cluster
    card = httpx.get(f"{url}/v1/models/{ZERO_MODEL}", headers={"x-api-key": API_KEY}, timeout=30).json()
    assert card["status"] == "cold" and running("model-" + ZERO_MODEL) == 0
    started = time.monotonic()
    r = chat(url, ZERO_MODEL)
    assert r.status_code == 200, r.text  # held through the cold start, not failed
    assert time.monotonic() - started > 1  # it really waited for a replica to start
    assert running("model-" + ZERO_MODEL) == 1
    card = httpx.get(f"{url}/v1/models/{ZERO_MODEL}", headers={"x-api-key": API_KEY}, timeout=30).json()
    assert card["status"] == "ready"


def test_sustained_load_scales_to_two_gpu_replicas_and_idle_scales_back(cluster):
    url, gpu_nodes, _ = cluster
    deployment = "model-" + GPU_MODEL
    stop = time.monotonic() + 90

    def keep_busy() -> None:
        while time.monotonic() < stop and running(deployment) < 2:
            chat(url, GPU_MODEL, max_tokens=48)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(keep_busy)
        wait_until(lambda: running(deployment) == 2, 90, "a second replica under load", interval=1)
    nodes = replica_nodes(deployment)
    assert len(nodes) == 2 and set(nodes) == gpu_nodes  # one per fake-GPU worker, none on the head
    wait_until(lambda: running(deployment) == 1, 90, "scale-down when idle", interval=1)
