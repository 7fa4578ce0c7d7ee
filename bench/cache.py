"""The response cache's payoff: the same deterministic chat request answered by the model (a miss: each
prompt is new) and from the cache (a hit: each prompt repeated), interleaved request by request against one
`serve run` of the CPU default's chat model, whole and streamed.

    python -m bench.cache          # prints a table, saves bench/results/cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.chat import RESULTS, percentile
from tests.support.models import CHAT_MODEL
from tests.support.servers import ServeRun, port_is_free, warm_up_chat

KEY = "bench-cache-" + "key"


def chat_model_only(config: dict) -> None:
    args = config["applications"][0]["args"]
    args["models"] = [m for m in args["models"] if m["id"] == CHAT_MODEL]


def timed(client: httpx.Client, prompt: str, stream: bool, max_tokens: int) -> tuple[float, float, str]:
    """Seconds to the first byte of the answer and to its end, and the x-cache header."""
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}
    start = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        first = None
        for _ in response.iter_bytes():
            first = first or time.perf_counter() - start
        return first, time.perf_counter() - start, response.headers["x-cache"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests per variant and mode")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if not port_is_free(8000):
        raise SystemExit("port 8000 is taken: another Ray Serve proxy is up; stop it first")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        os.environ["ENDPOINT_STATE_DIR"] = work  # a fresh, empty cache (the default SQLite store)
        with ServeRun([KEY], Path(work) / "serve.log", tweak=chat_model_only) as server:
            warm_up_chat(server.url, KEY, CHAT_MODEL)
            with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=300) as client:
                for stream in (False, True):
                    cached_prompt = f"Describe the sea in one sentence ({stream})."
                    timed(client, cached_prompt, stream, args.max_tokens)  # fills the cache
                    samples: dict[str, list[tuple[float, float]]] = {"miss": [], "hit": []}
                    for i in range(args.requests):  # interleaved: both see the same machine state
                        first, end, state = timed(client, f"Describe the sea, take {i} {time.time()}.", stream,
                                                  args.max_tokens)
                        samples[state].append((first, end))
                        first, end, state = timed(client, cached_prompt, stream, args.max_tokens)
                        samples[state].append((first, end))
                    for state, values in samples.items():
                        rows.append({"mode": "stream" if stream else "whole", "x-cache": state,
                                     "requests": len(values),
                                     "first_byte_p50_ms": 1000 * statistics.median(v[0] for v in values),
                                     "latency_p50_ms": 1000 * statistics.median(v[1] for v in values),
                                     "latency_p90_ms": 1000 * percentile([v[1] for v in values], 0.9)})
    print(f"{'mode':<7}{'x-cache':<9}{'n':>4}{'first byte p50':>16}{'latency p50':>13}{'p90':>10}{'speed-up':>10}")
    for row in rows:
        miss = next(r for r in rows if r["mode"] == row["mode"] and r["x-cache"] == "miss")
        row["speedup_p50"] = miss["latency_p50_ms"] / row["latency_p50_ms"]
        print(f"{row['mode']:<7}{row['x-cache']:<9}{row['requests']:>4}{row['first_byte_p50_ms']:>14.1f}ms"
              f"{row['latency_p50_ms']:>11.1f}ms{row['latency_p90_ms']:>8.1f}ms{row['speedup_p50']:>9.1f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "cache.json"
    out.write_text(json.dumps({"max_tokens": args.max_tokens, "rows": rows}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
