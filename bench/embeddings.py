"""Embeddings per second through the endpoint (`serve run`, the OpenAI SDK's base64 encoding) vs the same
engine in-process, at 1, 16 and 64 inputs per request, with a few requests in flight; the two are run in
turns, repeat by repeat, so both see the same machine state.

    python -m bench.embeddings     # prints a table, saves bench/results/embeddings.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from bench.chat import RESULTS
from deployments import model_source
from deployments.engines.options import HFEmbeddingOptions
from serve_app.protocol.embeddings import EmbeddingRequest
from tests.support.models import EMBEDDING_MODEL, app_args
from tests.support.servers import ServeRun, port_is_free

KEY = "bench-embeddings-" + "key"
BATCHES = (1, 16, 64)
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches".split()


def embedding_model_only(config: dict) -> None:
    args = config["applications"][0]["args"]
    args["models"] = [m for m in args["models"] if m["id"] == EMBEDDING_MODEL]
    args["rate_limits"] = {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000}  # measure, not limit


def texts(batch: int, request: int) -> list[str]:
    """Sentences of 8-15 words, different in every request (nothing can be served from a cache)."""
    return [" ".join(WORDS[(request + i + k) % len(WORDS)] for k in range(8 + (request + i) % 8)) + f" {request}"
            for i in range(batch)]


def through_endpoint(client: OpenAI, batch: int, requests: int, concurrency: int) -> float:
    def one(i: int) -> int:
        return len(client.embeddings.create(model=EMBEDDING_MODEL, input=texts(batch, i)).data)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = sum(pool.map(one, range(requests)))
    return done / (time.perf_counter() - start)


def in_process(engine, batch: int, requests: int, concurrency: int) -> float:
    async def run() -> int:
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with slots:
                result = await engine.embed(EmbeddingRequest(model=EMBEDDING_MODEL, input=texts(batch, i)))
                return len(result.vectors)

        return sum(await asyncio.gather(*(one(i) for i in range(requests))))

    start = time.perf_counter()
    done = asyncio.run(run())
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=512, help="inputs embedded per measurement")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not port_is_free(8000):
        raise SystemExit("port 8000 is taken: another Ray Serve proxy is up; stop it first")
    from deployments.engines.hf.embedding import HFEmbeddingEngine

    config = next(m for m in app_args()["models"] if m["id"] == EMBEDDING_MODEL)
    options = HFEmbeddingOptions.model_validate(config["engine_options"])  # the replica's own settings
    samples: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        os.environ["ENDPOINT_STATE_DIR"] = work
        with ServeRun([KEY], Path(work) / "serve.log", tweak=embedding_model_only) as server:
            client = OpenAI(api_key=KEY, base_url=server.url + "/v1", max_retries=0, timeout=300)
            client.embeddings.create(model=EMBEDDING_MODEL, input="warm up")
            engine = HFEmbeddingEngine(model_source.resolve(model_source_of(config)), options)
            try:
                for _ in range(args.repeats):
                    for batch in BATCHES:
                        requests = max(args.concurrency, args.inputs // batch)
                        samples.setdefault(("endpoint", batch), []).append(
                            through_endpoint(client, batch, requests, args.concurrency))
                        samples.setdefault(("in-process", batch), []).append(
                            in_process(engine, batch, requests, args.concurrency))
            finally:
                engine.shutdown()
    rows = []
    print(f"{'inputs/request':>15}{'endpoint /s':>14}{'in-process /s':>16}{'ratio':>8}")
    for batch in BATCHES:
        endpoint = statistics.median(samples[("endpoint", batch)])
        local = statistics.median(samples[("in-process", batch)])
        rows.append({"inputs_per_request": batch, "endpoint_per_s": endpoint, "in_process_per_s": local,
                     "ratio": endpoint / local, "samples": {"endpoint": samples[("endpoint", batch)],
                                                            "in_process": samples[("in-process", batch)]}})
        print(f"{batch:>15}{endpoint:>14.1f}{local:>16.1f}{endpoint / local:>7.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "embeddings.json"
    out.write_text(json.dumps({"concurrency": args.concurrency, "inputs": args.inputs, "repeats": args.repeats,
                               "engine_options": config["engine_options"], "rows": rows}, indent=2))
    print(f"saved {out}")


def model_source_of(config: dict):
    from serve_app.config import ModelSource

    return ModelSource.model_validate(config["source"])


if __name__ == "__main__":
    main()
