"""Does a large batch slow interactive traffic? Interactive streamed chat TTFT and latency with no batch, then
while a large batch runs on the same model (the runner sends a line only while the model holds no interactive
request), alternating phases against one `serve run` of the CPU default's chat model.

    python -m bench.batch_priority      # prints a table, saves bench/results/batch_priority.json
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
from openai import OpenAI

from bench.cache import chat_model_only
from bench.chat import RESULTS
from tests.support.models import CHAT_MODEL
from tests.support.servers import ServeRun, port_is_free, warm_up_chat

KEY = "bench-batch-" + "key"


def interactive(client: httpx.Client, n: int, max_tokens: int, pause_s: float) -> list[tuple[float, float]]:
    """n streamed requests one after another (a user at a time), each: (TTFT, whole latency)."""
    out = []
    for i in range(n):
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Tell me about rivers ({i})."}],
                "max_tokens": max_tokens, "temperature": 0.7, "stream": True}
        start = time.perf_counter()
        ttft = None
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if ttft is None and '"content":"' in line and '"content":""' not in line:
                    ttft = time.perf_counter() - start
        out.append((ttft or 0.0, time.perf_counter() - start))
        time.sleep(pause_s)  # think time: the gaps the batch runner fills
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=15, help="interactive requests per phase")
    parser.add_argument("--phases", type=int, default=2, help="alternations of without / with the batch")
    parser.add_argument("--batch-lines", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--pause-s", type=float, default=0.5)
    parser.add_argument("--batch-concurrency", type=int, default=None, help="override state.batch_concurrency")
    args = parser.parse_args()
    if not port_is_free(8000):
        raise SystemExit("port 8000 is taken: another Ray Serve proxy is up; stop it first")
    samples: dict[str, list[tuple[float, float]]] = {"no batch": [], "batch running": []}
    batch_lines_done = 0
    with tempfile.TemporaryDirectory() as work:
        os.environ["ENDPOINT_STATE_DIR"] = work
        def tweak(config: dict) -> None:
            chat_model_only(config)
            if args.batch_concurrency:
                config["applications"][0]["args"]["state"] = {"batch_concurrency": args.batch_concurrency}

        with ServeRun([KEY], Path(work) / "serve.log", tweak=tweak) as server:
            warm_up_chat(server.url, KEY, CHAT_MODEL)
            sdk = OpenAI(api_key=KEY, base_url=server.url + "/v1", max_retries=0)
            lines = "\n".join(json.dumps({"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
                                          "body": {"model": CHAT_MODEL, "max_tokens": args.max_tokens,
                                                   "messages": [{"role": "user", "content": f"Story {i}."}]}})
                              for i in range(args.batch_lines))
            with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=300) as client:
                for _ in range(args.phases):
                    samples["no batch"] += interactive(client, args.requests, args.max_tokens, args.pause_s)
                    file = sdk.files.create(file=("b.jsonl", lines.encode()), purpose="batch")
                    batch = sdk.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                               completion_window="24h")
                    while sdk.batches.retrieve(batch.id).request_counts.completed < 4:  # the batch is running
                        time.sleep(0.5)
                    samples["batch running"] += interactive(client, args.requests, args.max_tokens, args.pause_s)
                    batch_lines_done += sdk.batches.retrieve(batch.id).request_counts.completed
                    sdk.batches.cancel(batch.id)
                    while sdk.batches.retrieve(batch.id).status != "cancelled":
                        time.sleep(0.5)
    rows = []
    for name, values in samples.items():
        rows.append({"phase": name, "requests": len(values),
                     "ttft_p50_ms": 1000 * statistics.median(v[0] for v in values),
                     "latency_p50_ms": 1000 * statistics.median(v[1] for v in values)})
    base = rows[0]
    print(f"{'phase':<15}{'n':>4}{'TTFT p50':>12}{'latency p50':>14}{'TTFT ratio':>12}")
    for row in rows:
        row["ttft_ratio"] = row["ttft_p50_ms"] / base["ttft_p50_ms"]
        print(f"{row['phase']:<15}{row['requests']:>4}{row['ttft_p50_ms']:>10.1f}ms{row['latency_p50_ms']:>12.1f}ms"
              f"{row['ttft_ratio']:>11.2f}x")
    print(f"batch lines finished during the 'batch running' phases: {batch_lines_done}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "batch_priority.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "batch_lines_done": batch_lines_done}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
