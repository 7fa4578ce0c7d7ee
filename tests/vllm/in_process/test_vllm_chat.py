"""Chat through the gateway with the vLLM engine on CPU: sampling fields, streaming, cancellation, limits."""

from __future__ import annotations

import os
import time

import httpx
import openai
import pytest

from deployments.engines.vllm_engine import VLLMEngine
from tests.support.keys import API_KEY
from tests.support.models import CHAT_MODEL, VLLM_CONFIG, app_args

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_engine_is_vllm(vllm_gateway):
    assert isinstance(vllm_gateway.servers[CHAT_MODEL].engine, VLLMEngine)


def test_engine_core_runs_below_the_request_path(vllm_gateway):
    """config/cpu-vllm.yaml's compute_nice: every thread of the engine core's process, those running when it was
    lowered and those started since, sits that many nice levels below the process that started it."""
    nice = next(m for m in app_args(VLLM_CONFIG)["models"] if m["id"] == CHAT_MODEL)["engine_options"]["compute_nice"]
    engine = vllm_gateway.servers[CHAT_MODEL].engine
    own = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert nice > 0 and engine.engine_processes
    for pid in engine.engine_processes:
        threads = {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}
        assert threads == {min(19, own + nice)}, pid


def test_greedy_chat_with_usage(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    assert "Paris" in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 5 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_with_usage(client):
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert chunks[-1].usage.completion_tokens > 0


def test_same_seed_same_text_and_sampling_extras_accepted(client):
    def sample(seed: int) -> str:
        return client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Write a sentence about cats."}], seed=seed,
            temperature=1.0, top_p=0.95, max_tokens=24, presence_penalty=0.2, frequency_penalty=0.2,
            extra_body={"top_k": 50, "min_p": 0.02, "repetition_penalty": 1.1}).choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert len({first, sample(8), sample(9)}) > 1


def test_max_tokens_and_n(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Tell me a story."}],
                                       max_tokens=5, n=2, seed=1, temperature=1.0)
    assert [c.finish_reason for c in r.choices] == ["length", "length"] and r.usage.completion_tokens == 10


def test_parameters_vllm_would_refuse_are_400s_and_a_seed_near_2_64_still_serves_n_choices(client):
    with pytest.raises(openai.BadRequestError) as err:  # the engine's default cap is 512 tokens
        client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, extra_body={"min_tokens": 600})
    assert err.value.body["param"] == "min_tokens"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=CHAT_MODEL, prompt="", max_tokens=4)
    assert err.value.body["param"] == "prompt"
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=3, n=2, seed=2**64 - 1)
    assert len(r.choices) == 2 and r.usage.completion_tokens == 6


def test_stop_strings_end_the_text_and_never_leak(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20,
                                       stop=[" Paris"])
    assert r.choices[0].finish_reason == "stop" and "Paris" not in r.choices[0].message.content
    assert r.choices[0].message.content.startswith("The capital of France is")


def test_context_overflow_is_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=4000)
    assert err.value.code == "context_length_exceeded" and "2048" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "word " * 3000}])
    assert err.value.code == "context_length_exceeded"


def test_client_disconnect_aborts_generation_in_vllm(vllm_gateway):
    engine = vllm_gateway.servers[CHAT_MODEL].engine
    unfinished = engine.engine.output_processor.get_num_unfinished_requests
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Count from 1 to 1000."}],
            "max_tokens": 1500, "stream": True}
    with httpx.stream("POST", vllm_gateway.url + "/v1/chat/completions", json=body,
                      headers={"x-api-key": API_KEY}, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert unfinished() == 1
    deadline = time.monotonic() + 10
    while unfinished() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unfinished() == 0  # aborted long before its 1500 tokens


def test_logprobs_and_top_logprobs(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=5,
                                       logprobs=True, top_logprobs=3)
    choice = r.choices[0]
    content = choice.logprobs.content
    assert choice.finish_reason == "length" and len(content) == 5 == r.usage.completion_tokens
    assert "".join(e.token for e in content) == choice.message.content
    for entry in content:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode() == entry.token
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the chosen token is the most likely one
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
    streamed = list(client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=5,
                                                   logprobs=True, stream=True))
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert tokens == [e.token for e in content]
