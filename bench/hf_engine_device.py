"""The transformers engine against transformers' own batched generate(), in one process, on one device.

On a GPU a forward pass of a small model takes a few milliseconds, so whatever the engine does per step in Python
(sampling, detokenising each row, handing steps to the event loop) decides its speed; on the CPU the forward pass
hides it. Both sides run SmolLM2-135M's shape (its config.json) with random weights (no download), greedy,
`--tokens` tokens per stream with the end of sequence ignored, and distinct prompts of equal length; interleaved,
level by level, medians of `--repeats`.

    python -m bench.hf_engine_device --device cuda --streams 1,16,64
    python -m bench.hf_engine_device --device cpu --streams 1,4 --tokens 32 --layers 4   # a quick look on a CPU

The model's folder (config.json and the tokenizer) is SmolLM2's converted checkpoint, or `--model-dir`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
WORDS = "river stone cloud lamp garden window bridge forest candle harbor meadow lantern".split()


def model_dir(given: str | None) -> str:
    if given:
        return given
    from deployments import model_source
    from tests.support.models import SMOLLM2_SOURCE

    return model_source.as_transformers_checkpoint(model_source.resolve(SMOLLM2_SOURCE))


def build_random_model(source: str, target: Path, layers: int | None) -> None:
    """SmolLM2's architecture and tokenizer, random weights (seed 0)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    if layers:
        config.num_hidden_layers = layers
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)


def prompts(tokenizer, count: int, words: int = 24) -> list[str]:
    """`count` distinct prompts of the same token length (no padding differences between the two sides)."""
    by_length: dict[int, list[str]] = {}
    for i in range(50 * count + 200):
        text = " ".join(WORDS[(i + k * 7) % len(WORDS)] + str((i * 31 + k) % 97) for k in range(words))
        by_length.setdefault(len(tokenizer(text).input_ids), []).append(text)
    most = max(by_length.values(), key=len)
    if len(most) < count:
        raise SystemExit(f"only {len(most)} prompts of one length; ask for fewer streams")
    return most[:count]


async def engine_run(engine, texts: list[str], tokens: int) -> dict:
    from serve_app.protocol.completions import CompletionRequest

    start = time.perf_counter()
    first: list[float] = []

    async def one(text: str) -> int:
        request = CompletionRequest(model="m", prompt=text, max_tokens=tokens, temperature=0, ignore_eos=True)
        got, seen = 0, False
        async for step in engine.generate(request):
            if not seen:
                first.append(time.perf_counter() - start)
                seen = True
            if step.usage is not None:
                got = step.usage.completion_tokens
        return got

    counts = await asyncio.gather(*[one(t) for t in texts])
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": sum(counts), "ttft_p50_ms": 1000 * statistics.median(first)}


def generate_run(model, tokenizer, texts: list[str], tokens: int, device: torch.device) -> dict:
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": (out.shape[1] - batch["input_ids"].shape[1]) * len(texts)}


class StepClock:
    """Time the engine's worker spends in `_advance` (detokenising and emitting) against its whole steps."""

    def __init__(self, engine) -> None:
        self.advance_s = self.step_s = 0.0
        self.steps = 0
        advance, step = engine._advance, engine._step

        def timed_advance(*args):
            t = time.perf_counter()
            try:
                return advance(*args)
            finally:
                self.advance_s += time.perf_counter() - t

        def timed_step():
            t = time.perf_counter()
            try:
                return step()
            finally:
                self.step_s += time.perf_counter() - t
                self.steps += 1

        engine._advance, engine._step = timed_advance, timed_step

    def take(self) -> dict:
        took = {"step_ms": 1000 * self.step_s / max(self.steps, 1),
                "advance_ms": 1000 * self.advance_s / max(self.steps, 1)}
        self.advance_s = self.step_s = 0.0
        self.steps = 0
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: the engine's auto (bfloat16 on a GPU)")
    parser.add_argument("--streams", default="1,16,64")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", default="engine,generate", help="engine and/or generate")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than SmolLM2's 30 (quick looks)")
    parser.add_argument("--model-dir", default=os.environ.get("HF_ENGINE_TOKENIZER"))
    parser.add_argument("--out", default=str(RESULTS / "hf_engine_device.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from deployments.engines.hf.engine import HFTextEngine
    from deployments.engines.options import HFEngineOptions

    levels = [int(n) for n in args.streams.split(",")]
    sides = set(args.sides.split(","))
    source = model_dir(args.model_dir)
    with tempfile.TemporaryDirectory() as folder:
        build_random_model(source, Path(folder), args.layers)
        options = HFEngineOptions(device=args.device, max_batch_size=max(levels),
                                  **({"dtype": args.dtype} if args.dtype else {}))
        engine = HFTextEngine(folder, options)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    clock = StepClock(engine)
    texts = prompts(tokenizer, max(levels))
    asyncio.run(engine_run(engine, texts[:2], 8))  # warm both paths (kernels, allocator)
    generate_run(engine.model, tokenizer, texts[:2], 8, engine.device)
    clock.take()

    rows = []
    for streams in levels:
        runs = {"engine": [], "generate": []}
        for _ in range(args.repeats):
            if "engine" in sides:
                runs["engine"].append({**asyncio.run(engine_run(engine, texts[:streams], args.tokens)),
                                       **clock.take()})
            if "generate" in sides:
                runs["generate"].append(generate_run(engine.model, tokenizer, texts[:streams], args.tokens,
                                                     engine.device))
        row = {"streams": streams, "engine_tok_s": 0.0, "generate_tok_s": 0.0, "engine_step_ms": 0.0,
               "engine_advance_ms": 0.0, "generate_step_ms": 0.0, "engine_ttft_p50_ms": 0.0}
        for side, samples in runs.items():
            if samples:
                row[f"{side}_tok_s"] = statistics.median(s["tokens"] / s["wall_s"] for s in samples)
                row[f"{side}_tokens"] = samples[0]["tokens"]
        for key in ("ttft_p50_ms", "step_ms", "advance_ms"):
            if runs["engine"]:
                row[f"engine_{key}"] = statistics.median(s[key] for s in runs["engine"])
        if runs["generate"]:
            row["generate_step_ms"] = statistics.median(1000 * s["wall_s"] / args.tokens for s in runs["generate"])
        row["ratio"] = row["engine_tok_s"] / row["generate_tok_s"] if row["generate_tok_s"] else 0.0
        rows.append(row)
    engine.shutdown()

    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
          f"dtype {engine.options.dtype}, {args.tokens} tokens per stream, medians of {args.repeats}")
    print("| streams | engine tok/s | generate() tok/s | engine / generate | engine step ms | of it detokenise+emit ms "
          "| generate() step ms | engine TTFT p50 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['streams']} | {r['engine_tok_s']:.0f} | {r['generate_tok_s']:.0f} | {r['ratio']:.2f}x | "
              f"{r['engine_step_ms']:.2f} | {r['engine_advance_ms']:.2f} | {r['generate_step_ms']:.2f} | "
              f"{r['engine_ttft_p50_ms']:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "dtype": engine.options.dtype, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
