"""The transformers engine on the real SmolLM2 model, called in-process."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from deployments.engines.hf.incremental_text import IncrementalText
from serve_app.contract import collect
from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest
from tests.engines.conftest import ENGINE_OPTIONS


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "What is the capital of France?"}],
                                 **kw)


def test_greedy_answer(hf_engine):
    done = asyncio.run(collect(hf_engine.generate(chat(temperature=0, max_tokens=20)), 1))
    assert "Paris" in done.choices[0][0] and done.choices[0][1] == "stop"


def test_batched_rows_match_solo_greedy_output(hf_engine):
    """Left padding and per-row positions must not change what a sequence generates."""
    prompts = ["What is the capital of France?", "Name three colours.", "Write one word: hello"]

    async def run(batch: bool):
        reqs = [ChatCompletionRequest(model="m", temperature=0, max_tokens=12,
                                      messages=[{"role": "user", "content": p}]) for p in prompts]
        if batch:
            return await asyncio.gather(*[collect(hf_engine.generate(r), 1) for r in reqs])
        return [await collect(hf_engine.generate(r), 1) for r in reqs]

    solo = [c.choices[0][0] for c in asyncio.run(run(False))]
    together = [c.choices[0][0] for c in asyncio.run(run(True))]
    assert solo == together


def test_n_copies_of_a_prompt_are_prefilled_once_and_each_generates_what_it_would_alone(hf_engine, monkeypatch):
    prefilled_rows = []
    forward = hf_engine.model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:  # a prefill (decode steps feed one token per row)
            prefilled_rows.append(ids.shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(hf_engine.model, "forward", counting)
    four = asyncio.run(collect(hf_engine.generate(chat(temperature=0, max_tokens=12, n=4)), 4))
    one = asyncio.run(collect(hf_engine.generate(chat(temperature=0, max_tokens=12)), 1))
    assert prefilled_rows == [1, 1]
    assert [text for text, _, _ in four.choices] == [one.choices[0][0]] * 4


def test_context_overflow_raises_400(hf_engine):
    with pytest.raises(InvalidRequest) as err:
        asyncio.run(collect(hf_engine.generate(chat(max_tokens=hf_engine.max_model_len)), 1))
    assert err.value.code == "context_length_exceeded"


def test_closing_the_stream_frees_the_batch_row(hf_engine):
    async def start_then_abandon():
        steps = hf_engine.generate(chat(max_tokens=400, temperature=1.0, seed=1))
        await anext(steps)
        await anext(steps)
        assert hf_engine.running_sequences == 1
        await steps.aclose()  # what a client disconnect does to the replica's generator
        deadline = time.monotonic() + 5
        while hf_engine.running_sequences and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return hf_engine.running_sequences

    assert asyncio.run(start_then_abandon()) == 0


class _CharTokenizer:
    """One character per token, so stop strings can straddle tokens in controlled ways."""

    def decode(self, ids, **_):
        return "".join(chr(i) for i in ids)


def feed(text: str, stops: list[str]) -> tuple[str, bool]:
    inc = IncrementalText(_CharTokenizer(), stops)
    out = ""
    for ch in text:
        piece, stopped = inc.add(ord(ch))
        out += piece
        if stopped:
            return out, True
    tail, stopped = inc.flush()
    return out + tail, stopped


def test_stop_string_across_tokens_is_cut_and_never_leaks():
    assert feed("hello world. END more", ["END"]) == ("hello world. ", True)
    assert feed("abc", ["cd"]) == ("abc", False)  # a held-back partial match is released at the end
    assert feed("no stops here", []) == ("no stops here", False)


class _ByteTokenizer:
    """One UTF-8 byte per token: a character can span tokens, as with byte-level BPE."""

    def decode(self, ids, **_):
        return bytes(ids).decode("utf-8", errors="replace")


def test_stop_found_while_a_multibyte_character_is_incomplete():
    inc = IncrementalText(_ByteTokenizer(), ["STOP"])
    sent = ""
    for b in b"ok STOP":
        sent += inc.add(b)[0]
    piece, stopped = inc.add("é".encode()[0])  # first half of a two-byte character
    assert (sent + piece, stopped) == ("ok ", True)


def test_request_joining_a_running_batch_generates_what_it_would_alone(hf_engine):
    """Continuous batching: B joins while A is mid-generation; neither output changes (greedy)."""
    a = ChatCompletionRequest(model="m", temperature=0, max_tokens=80,
                              messages=[{"role": "user", "content": "Tell me about the sea."}])
    b = ChatCompletionRequest(model="m", temperature=0, max_tokens=15, repetition_penalty=1.3,
                              messages=[{"role": "user", "content": "What is the capital of France? Answer briefly."}])

    async def overlapped():
        steps_a = hf_engine.generate(a)
        text_a = ""
        for _ in range(5):  # A is several tokens in before B arrives
            text_a += "".join(d.text for d in (await anext(steps_a)).deltas)
        done_b = asyncio.create_task(collect(hf_engine.generate(b), 1))
        joined = False
        for _ in range(300):
            joined = joined or hf_engine.running_sequences == 2
            await asyncio.sleep(0.01)
        assert joined  # B really shared A's batch
        rest_a = await collect(steps_a, 1)
        return text_a + rest_a.choices[0][0], (await done_b).choices[0][0]

    solo_a = asyncio.run(collect(hf_engine.generate(a), 1)).choices[0][0]
    solo_b = asyncio.run(collect(hf_engine.generate(b), 1)).choices[0][0]
    assert asyncio.run(overlapped()) == (solo_a, solo_b)


def test_decode_thread_and_its_torch_workers_run_below_the_event_loop(hf_engine):
    """The decode thread, and the OpenMP workers torch starts from it, yield the CPU to the request path."""
    asyncio.run(collect(hf_engine.generate(chat(temperature=0, max_tokens=2)), 1))  # the workers exist by now
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    decode_nice = os.getpriority(os.PRIO_PROCESS, hf_engine._worker.native_id)
    assert decode_nice == min(19, loop_nice + hf_engine.options.compute_nice) > loop_nice
    lowered = [tid for tid in os.listdir("/proc/self/task") if os.getpriority(os.PRIO_PROCESS, int(tid)) == decode_nice]
    assert len(lowered) >= hf_engine.options.torch_threads  # the decode thread and torch's workers for it


def test_a_burst_after_concurrent_load_shares_one_prefill_and_a_lone_request_never_waits(smollm_path,
                                                                                         monkeypatch):
    """Requests reach a served engine spread out by the serving path. After a busy period of several requests,
    an idle engine gathers arrivals that come within burst_gap_ms into one prefill; after a lone request it
    waits only batch_wait_ms, so a single user's next request pays nothing."""
    from deployments.engines.hf.engine import HFTextEngine

    options = ENGINE_OPTIONS.model_copy(update={"burst_gap_ms": 150, "burst_max_wait_ms": 2000})
    engine = HFTextEngine(smollm_path, options)
    prefills: list[int] = []
    forward = engine.model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            prefills.append(ids.shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting)

    async def staggered(count: int, apart_s: float, max_tokens: int = 4):
        async def one(i: int):
            await asyncio.sleep(i * apart_s)
            question = f"Name a colour, number {i}."  # distinct prompts: identical ones share one prefill row
            return await collect(engine.generate(ChatCompletionRequest(
                model="m", temperature=0, max_tokens=max_tokens, messages=[{"role": "user", "content": question}])), 1)
        return await asyncio.gather(*[one(i) for i in range(count)])

    try:
        asyncio.run(staggered(1, 0))  # a lone request: the next arrivals are not a burst
        prefills.clear()
        asyncio.run(staggered(3, 0.08, max_tokens=24))  # 80 ms apart, past batch_wait_ms: not gathered
        assert prefills[0] == 1 and len(prefills) > 1
        prefills.clear()
        asyncio.run(staggered(4, 0.08))  # after that concurrent load: gathered into one prefill
        assert prefills == [4]
    finally:
        engine.shutdown()


def test_an_empty_legacy_prompt_is_a_400_not_a_crashed_batch(hf_engine):
    from serve_app.protocol.completions import CompletionRequest

    with pytest.raises(InvalidRequest) as err:  # SmolLM2's tokenizer adds no BOS: "" is no token at all
        asyncio.run(collect(hf_engine.generate(CompletionRequest(model="m", prompt="", max_tokens=4)), 1))
    assert err.value.param == "prompt"
    assert asyncio.run(collect(hf_engine.generate(chat(temperature=0, max_tokens=4)), 1)).usage.completion_tokens == 4


def test_min_tokens_beyond_the_completions_maximum_is_a_400(hf_engine):
    with pytest.raises(InvalidRequest) as err:
        asyncio.run(collect(hf_engine.generate(chat(max_tokens=8, min_tokens=9)), 1))
    assert err.value.param == "min_tokens"
    with pytest.raises(InvalidRequest):  # no max_tokens: the model's default caps the completion
        asyncio.run(collect(hf_engine.generate(chat(min_tokens=hf_engine.options.default_max_tokens + 1)), 1))


def test_steps_say_the_usage_so_far_so_a_client_that_leaves_is_charged(hf_engine):
    async def steps():
        return [step async for step in hf_engine.generate(chat(temperature=0, max_tokens=6, ignore_eos=True))]

    got = asyncio.run(steps())
    so_far = [s.progress.completion_tokens for s in got[:-1]]
    assert so_far == sorted(so_far) and so_far[-1] < 6 and all(s.usage is None for s in got[:-1])
    assert got[-1].usage.completion_tokens == 6 and got[-1].progress is None


QWEN3_LIKE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n"
              "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
              "{% endif %}")


def test_reasoning_effort_none_switches_thinking_off_through_the_template_or_is_a_400(smollm_path):
    from transformers import AutoTokenizer

    from deployments.engines.chat_prompt import render_chat

    tokenizer = AutoTokenizer.from_pretrained(smollm_path)
    with pytest.raises(InvalidRequest) as err:  # SmolLM2's own template has no switch
        render_chat(tokenizer, chat(reasoning_effort="none"))
    assert err.value.param == "reasoning_effort"
    tokenizer.chat_template = QWEN3_LIKE
    assert render_chat(tokenizer, chat(reasoning_effort="minimal")).endswith("<think>\n\n</think>\n\n")
    for effort in (None, "high"):
        assert "<think>" not in render_chat(tokenizer, chat(reasoning_effort=effort))


def test_a_request_whose_prefill_fails_fails_alone_not_the_requests_admitted_with_it(hf_engine, monkeypatch):
    from deployments.engines.hf import engine as engine_module

    poison = hf_engine.tokenizer("zebra-poison", add_special_tokens=False).input_ids
    prefill = engine_module.RunningBatch.prefill

    def failing_for_the_poison(model, prompts, *args, **kwargs):
        if any(str(poison)[1:-1] in str(ids) for ids in prompts):
            raise RuntimeError("a prompt this model cannot take")
        return prefill(model, prompts, *args, **kwargs)

    monkeypatch.setattr(engine_module.RunningBatch, "prefill", staticmethod(failing_for_the_poison))

    async def together():
        def ask(text: str):
            request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": text}], max_tokens=4,
                                            temperature=0)
            return collect(hf_engine.generate(request), 1)

        return await asyncio.gather(ask("What is the capital of France?"), ask("zebra-poison"),
                                    ask("Name a colour."), return_exceptions=True)

    good, bad, other = asyncio.run(together())
    assert isinstance(bad, RuntimeError) and "generation failed" in str(bad)
    assert good.usage.completion_tokens == 4 and other.usage.completion_tokens == 4


def test_shutdown_stops_a_full_batch_after_its_current_step(smollm_path):
    """A full batch never reads the queue where the stop was asked for: teardown waited for its longest answer
    (Serve's replica destructor calls this)."""
    from deployments.engines.hf.engine import HFTextEngine
    from deployments.engines.options import HFEngineOptions

    engine = HFTextEngine(smollm_path, HFEngineOptions(max_batch_size=2, torch_threads=2))
    long = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Tell me about the sea."}],
                                 temperature=0, max_tokens=4000, ignore_eos=True)

    async def full_batch_then_shutdown():
        running = [asyncio.create_task(collect(engine.generate(long), 1)) for _ in range(2)]
        while engine.running_sequences < 2:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(engine.shutdown)
        return await asyncio.gather(*running, return_exceptions=True)

    outcomes = asyncio.run(full_batch_then_shutdown())
    assert not engine._worker.is_alive()  # stopped within shutdown's wait, not 4,000 tokens later
    assert [str(o) for o in outcomes] == ["engine stopped"] * 2


def test_a_request_whose_prompt_was_encoding_while_the_engine_stopped_fails_instead_of_waiting(smollm_path):
    """Encoding (images, a grammar) awaits between the 'still running?' check and the queue: a stop in that gap
    left the request waiting for a worker that had already exited."""
    from deployments.engines.hf.engine import HFTextEngine
    from deployments.engines.options import HFEngineOptions

    engine = HFTextEngine(smollm_path, HFEngineOptions(max_batch_size=2, torch_threads=2))
    encode = engine._prompt

    async def encode_while_stopping(request):
        await asyncio.to_thread(engine.shutdown)
        return await encode(request)

    engine._prompt = encode_while_stopping
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(asyncio.wait_for(collect(engine.generate(chat(max_tokens=4)), 1), 30))
