"""Structured outputs' cost: free text vs a `json_schema` answer of the same length, on both engines, side by
side in one run (interleaved level by level; each row the median of --repeats runs).

    python -m bench.structured          # prints a table, saves bench/results/structured.json

Both variants generate exactly --max-tokens tokens: free text with `ignore_eos`, the JSON answer under a schema
whose one string must be longer than the token budget allows. The engines are called in-process (the same
classes the replicas hold), so the comparison is the grammar's cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.chat import RESULTS, median_row, run_level
from tests.support.models import CPU_CONFIG, VLLM_CONFIG, app_args

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook, as JSON."}]
SCHEMA = {"type": "object", "properties": {"story": {"type": "string", "minLength": 2000}}, "required": ["story"],
          "additionalProperties": False}


def request(variant: str, max_tokens: int, seed: int):
    from serve_app.protocol.chat import ChatCompletionRequest

    extra = ({"ignore_eos": True} if variant == "free" else
             {"response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": SCHEMA}}})
    return ChatCompletionRequest(model="m", messages=PROMPT, max_tokens=max_tokens, temperature=0.8, seed=seed,
                                 stream=True, **extra)


async def timed(engine, variant: str, max_tokens: int, seed: int) -> dict:
    start = time.perf_counter()
    ttft, tokens = None, 0
    async for step in engine.generate(request(variant, max_tokens, seed)):
        if ttft is None and any(d.text for d in step.deltas):
            ttft = time.perf_counter() - start
        if step.usage:
            tokens = step.usage.completion_tokens
    return {"ttft": ttft or 0.0, "end": time.perf_counter() - start, "tokens": tokens}


def engines() -> dict:
    """The CPU default's SmolLM2 on each engine, with the options its config gives it."""
    from deployments import model_source
    from deployments.engines.hf.engine import HFTextEngine
    from deployments.engines.options import HFEngineOptions, VLLMOptions
    from deployments.engines.vllm_engine import VLLMEngine
    from serve_app.config import ModelSource

    def chat_model(path: Path) -> dict:
        return next(m for m in app_args(path)["models"] if m["kind"] == "text")

    hf, vllm = chat_model(CPU_CONFIG), chat_model(VLLM_CONFIG)
    weights = model_source.as_transformers_checkpoint(model_source.resolve(ModelSource(**hf["source"])))
    return {"transformers": HFTextEngine(weights, HFEngineOptions.model_validate(hf["engine_options"])),
            "vllm": VLLMEngine(weights, VLLMOptions.model_validate(vllm["engine_options"]))}


async def measure(args, built: dict) -> list[dict]:
    rows = []
    for level in args.levels:
        for _ in range(args.repeats):
            for engine_name, engine in built.items():
                for variant in ("free", "json_schema"):
                    name = f"{engine_name}/{variant}"

                    async def call(seed: int, engine=engine, variant=variant) -> dict:
                        return await timed(engine, variant, args.max_tokens, seed)

                    rows.append(await run_level(name, call, level, args.rounds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream at each level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS / "structured.json"))
    args = parser.parse_args()
    built = engines()
    try:
        rows = asyncio.run(measure(args, built))
    finally:
        for engine in built.values():
            engine.shutdown()
    medians = [median_row([r for r in rows if r["target"] == t and r["concurrency"] == c])
               for c in args.levels for t in sorted({r["target"] for r in rows})]
    print(f"{'target':<26} {'streams':>7} {'TTFT p50 ms':>11} {'agg tok/s':>9}")
    for r in medians:
        print(f"{r['target']:<26} {r['concurrency']:>7} {r['ttft_p50_ms']:>11.1f} {r['aggregate_tok_s']:>9.1f}")
    ratios = []
    for level in args.levels:
        for engine_name in built:
            free, constrained = (next(r for r in medians if r["target"] == f"{engine_name}/{v}"
                                      and r["concurrency"] == level) for v in ("free", "json_schema"))
            ratio = constrained["aggregate_tok_s"] / free["aggregate_tok_s"]
            ratios.append({"engine": engine_name, "streams": level, "json_schema/free aggregate": round(ratio, 3),
                           "ttft_added_ms": round(constrained["ttft_p50_ms"] - free["ttft_p50_ms"], 1)})
            print(f"{engine_name:<14} {level:>2} streams: json_schema/free {ratio:.2f}x, "
                  f"TTFT {constrained['ttft_p50_ms'] - free['ttft_p50_ms']:+.0f} ms")
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows, "medians": medians,
                                          "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
