"""Chat benchmark: TTFT and output tokens/s at several concurrency levels, side by side in one run.

Targets (any subset, measured one after another in the same run):
  gateway             the real product: `serve run config/cpu.yaml`, over HTTP with the OpenAI SDK (response
                      cache off: the bench repeats its seeded requests)
  gateway-replicas=N  the chat model alone behind the gateway, fixed at N replicas (no autoscaling), its own
                      `serve run` (alone: with every CPU-default model up, a second chat replica does not fit
                      in the 2 CPUs Ray sees on this box)
  gateway-replicas=N-threads=T   the same with torch_threads T in each replica (and/or -wait=MS: batch_wait_ms,
                      -exact: every request asks the shared rate limiter first, ingress.local_admission false;
                      -nice=N: compute_nice N, 0 being the engine at the request path's priority;
                      -burst=MS: burst_gap_ms, an idle engine gathering a burst after concurrent load)
  url                 any OpenAI-compatible endpoint given by --url/--api-key/--model
  inprocess           the same transformers engine called directly in this process (no HTTP, no Ray)
  inprocess-nobatch   the same, with max_batch_size=1: what serving requests one after another costs

Targets are measured interleaved, level by level, and each row is the median of --repeats runs.

    python -m bench.chat --targets gateway,inprocess,inprocess-nobatch
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support.models import CHAT_MODEL, CPU_CONFIG

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(name: str, concurrency: int, samples: list[dict], wall: float) -> dict:
    ttft = [s["ttft"] for s in samples]
    per_stream = [s["tokens"] / max(s["end"] - s["ttft"], 1e-9) for s in samples if s["tokens"] > 1]
    return {
        "target": name, "concurrency": concurrency, "requests": len(samples),
        "ttft_p50_ms": 1000 * statistics.median(ttft), "ttft_p95_ms": 1000 * percentile(ttft, 0.95),
        "stream_tok_s_p50": statistics.median(per_stream) if per_stream else 0.0,
        "aggregate_tok_s": sum(s["tokens"] for s in samples) / wall,
    }


async def openai_request(client, model: str, max_tokens: int, seed: int) -> dict:
    start = time.perf_counter()
    ttft, tokens = None, 0
    stream = await client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=max_tokens, temperature=0.8, seed=seed, stream=True,
        stream_options={"include_usage": True})
    async for chunk in stream:
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return {"ttft": ttft or 0.0, "end": time.perf_counter() - start, "tokens": tokens}


async def engine_request(engine, max_tokens: int, seed: int) -> dict:
    from serve_app.protocol.chat import ChatCompletionRequest

    request = ChatCompletionRequest(model="m", messages=PROMPT, max_tokens=max_tokens, temperature=0.8, seed=seed,
                                    stream=True)
    start = time.perf_counter()
    ttft, tokens = None, 0
    async for step in engine.generate(request):
        if ttft is None and any(d.text for d in step.deltas):
            ttft = time.perf_counter() - start
        if step.usage:
            tokens = step.usage.completion_tokens
    return {"ttft": ttft or 0.0, "end": time.perf_counter() - start, "tokens": tokens}


async def run_level(name: str, call, concurrency: int, rounds: int) -> dict:
    await call(0)  # warm-up outside the measurement
    samples: list[dict] = []

    async def worker(w: int) -> None:
        for r in range(rounds):
            samples.append(await call(1000 * w + r))

    start = time.perf_counter()
    await asyncio.gather(*[worker(w) for w in range(concurrency)])
    return summarize(name, concurrency, samples, time.perf_counter() - start)


def load_engine(config: str, max_batch_size: int | None):
    from deployments import model_source
    from deployments.engines.hf.engine import HFTextEngine
    from deployments.engines.options import HFEngineOptions
    from serve_app.config import AppArgs
    from tests.support.models import app_args

    model = next(m for m in AppArgs.model_validate(app_args(Path(config))).models if m.kind == "text")
    options = dict(model.engine_options)
    if max_batch_size:
        options["max_batch_size"] = max_batch_size
    return HFTextEngine(model_source.as_transformers_checkpoint(model_source.resolve(model.source)),
                        HFEngineOptions.model_validate(options))


async def measure(args, levels: list[int]) -> list[dict]:
    """Interleave targets level by level (A B C, A B C, ...) so machine noise hits them alike; keep medians."""
    from openai import AsyncOpenAI

    calls, clients = {}, []
    for target in args.targets.split(","):
        if target in ("inprocess", "inprocess-nobatch"):
            engine = load_engine(args.config, 1 if target == "inprocess-nobatch" else None)
            calls[target] = lambda seed, e=engine: engine_request(e, args.max_tokens, seed)
        else:
            url = args.gateways.get(target, args.url)
            client = AsyncOpenAI(base_url=url + "/v1", api_key=args.api_key, max_retries=0, timeout=600)
            clients.append(client)
            calls[target] = lambda seed, c=client: openai_request(c, args.model, args.max_tokens, seed)
    rows = []
    for level in levels:
        runs: dict[str, list[dict]] = {t: [] for t in calls}
        for repeat in range(args.repeats):
            for target, call in calls.items():
                if target == "inprocess-nobatch" and repeat:
                    continue  # serialized runs are slow and their spread is small: once is enough
                runs[target].append(await run_level(target, call, level, args.rounds))
        rows += [median_row(r) for r in runs.values()]
        print_table(rows)
    for client in clients:
        await client.close()
    return rows


def median_row(runs: list[dict]) -> dict:
    row = dict(runs[0])
    for key, value in row.items():
        if isinstance(value, float):
            row[key] = statistics.median(r[key] for r in runs)
    row["repeats"] = len(runs)
    return row


def print_table(rows: list[dict]) -> None:
    head = (f"{'target':<18} {'conc':>4} {'reqs':>4} {'TTFT p50 ms':>11} {'TTFT p95 ms':>11} "
            f"{'tok/s/stream':>12} {'agg tok/s':>9}")
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['target']:<18} {r['concurrency']:>4} {r['requests']:>4} {r['ttft_p50_ms']:>11.1f} "
              f"{r['ttft_p95_ms']:>11.1f} {r['stream_tok_s_p50']:>12.1f} {r['aggregate_tok_s']:>9.1f}")


def ratios(rows: list[dict], a: str, b: str) -> list[dict]:
    out = []
    for ra in (r for r in rows if r["target"] == a):
        rb = next((r for r in rows if r["target"] == b and r["concurrency"] == ra["concurrency"]), None)
        if rb:
            out.append({"concurrency": ra["concurrency"],
                        f"{a}/{b} aggregate": ra["aggregate_tok_s"] / rb["aggregate_tok_s"],
                        "ttft_p50_added_ms": ra["ttft_p50_ms"] - rb["ttft_p50_ms"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="gateway,inprocess,inprocess-nobatch")
    parser.add_argument("--url", help="for target 'url': an OpenAI-compatible base URL (without /v1)")
    parser.add_argument("--api-key", default="bench-secret")
    parser.add_argument("--model", default=CHAT_MODEL)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=2, help="requests per concurrent stream")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per level (medians kept)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--config", default=str(CPU_CONFIG),
                        help="Serve config for the gateway and in-process targets")
    parser.add_argument("--out", default=str(RESULTS / "chat.json"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind, so the Serve cluster is shut down too
    levels = [int(x) for x in args.levels.split(",")]
    args.gateways = {}
    with contextlib.ExitStack() as stack:
        from tests.support.servers import ServeRun

        for target in args.targets.split(","):
            if target == "gateway" or target.startswith("gateway-replicas="):
                fields = dict(part.split("=") for part in target.removeprefix("gateway-").split("-") if "=" in part)
                replicas = int(fields["replicas"]) if "replicas" in fields else None
                threads = int(fields["threads"]) if "threads" in fields else None
                wait = float(fields["wait"]) if "wait" in fields else None
                exact = "exact" in target.split("-")
                nice = int(fields["nice"]) if "nice" in fields else None
                burst = float(fields["burst"]) if "burst" in fields else None
                log = Path(tempfile.mkdtemp()) / "serve.log"
                server = ServeRun([args.api_key], log, Path(args.config),
                                  tweak=gateway_config(args.model, replicas, threads, wait, exact, nice, burst))
                args.gateways[target] = stack.enter_context(server).url
        rows = asyncio.run(measure(args, levels))
    del args.gateways
    names = args.targets.split(",")
    comparisons = ratios(rows, "gateway", "inprocess") + ratios(rows, "inprocess", "inprocess-nobatch")
    for name in (n for n in names if n.startswith("gateway-replicas=")):
        comparisons += ratios(rows, name, "inprocess")
        if name != "gateway-replicas=1":
            comparisons += ratios(rows, name, "gateway-replicas=1")
    report(args, rows, comparisons)


def gateway_config(model_id: str, replicas: int | None, threads: int | None = None, wait_ms: float | None = None,
                   exact_limits: bool = False, compute_nice: int | None = None, burst_gap_ms: float | None = None):
    """The shipped config without the response cache for the benched model (seeded requests repeat); with
    `replicas`, that model alone at a fixed count (no autoscaling)."""
    def tweak(config: dict) -> None:
        args = config["applications"][0]["args"]
        if exact_limits:
            args.setdefault("ingress", {})["local_admission"] = False
        model = next(m for m in args["models"] if m["id"] == model_id)
        model.pop("response_cache", None)
        if replicas is not None:
            model["deployment"].pop("autoscaling_config", None)
            model["deployment"]["num_replicas"] = replicas
            args["models"] = [model]
        if threads is not None:
            model["engine_options"]["torch_threads"] = threads
        if wait_ms is not None:
            model["engine_options"]["batch_wait_ms"] = wait_ms
        if compute_nice is not None:
            model["engine_options"]["compute_nice"] = compute_nice
        if burst_gap_ms is not None:
            model["engine_options"]["burst_gap_ms"] = burst_gap_ms
    return tweak


def report(args, rows: list[dict], comparisons: list[dict]) -> None:
    """Print the ratios and save settings, rows and ratios as JSON in args.out."""
    print()
    for c in comparisons:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in c.items()}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows, "ratios": comparisons}, indent=2))
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
