"""Chat completions through the official OpenAI SDK, as users call the endpoint."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.support.models import CHAT_MODEL, SPEECH_MODEL

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_list_names_every_configured_model(client, served_model_ids):
    ids = [m.id for m in client.models.list()]
    assert ids == served_model_ids
    assert client.models.retrieve(SPEECH_MODEL).id == SPEECH_MODEL


def test_chat_answers_with_usage(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    choice = r.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == CHAT_MODEL
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_delivers_chunks_then_usage(client):
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3  # streamed, not one blob
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    whole = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    assert whole.choices[0].message.content == text  # greedy: streamed and whole answers agree


def test_stream_without_usage_option_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=5, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_vllm_style_extras_and_seed_reproduce(client):
    kwargs = dict(model=CHAT_MODEL, messages=QUESTION, temperature=1.0, top_p=0.9, max_tokens=24, seed=1234,
                  presence_penalty=0.3, frequency_penalty=0.2,
                  extra_body={"top_k": 20, "repetition_penalty": 1.3, "min_p": 0.05})
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first and first == second
    other_seeds = {client.chat.completions.create(**{**kwargs, "seed": s}).choices[0].message.content
                   for s in (1, 2, 3)}
    assert len(other_seeds | {first}) > 1  # the seed, not greedy decoding, made them equal


def test_max_tokens_and_stop(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Count from 1 to 50."}],
                                       temperature=0, max_tokens=8)
    assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, stop=["Paris"])
    assert "Paris" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content.strip()  # text before the stop string is kept


def test_n_choices(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, n=3, max_tokens=12, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1


def test_system_and_developer_roles(client):
    for role in ("system", "developer"):
        r = client.chat.completions.create(model=CHAT_MODEL, max_tokens=10, temperature=0, messages=[
            {"role": role, "content": "You are a terse assistant."}, *QUESTION])
        assert r.choices[0].message.content


def test_a_reply_sent_back_as_the_sdk_dumps_it_continues_the_conversation(client):
    first = client.chat.completions.create(model=CHAT_MODEL, max_tokens=10, temperature=0, messages=QUESTION)
    reply = first.choices[0].message.model_dump()  # refusal, annotations, audio, function_call: null
    r = client.chat.completions.create(model=CHAT_MODEL, max_tokens=10, temperature=0, messages=[
        *QUESTION, reply, {"role": "user", "content": "And in one word?"}])
    assert r.choices[0].message.content and r.usage.prompt_tokens > first.usage.prompt_tokens


def test_concurrent_requests_all_complete(client):
    def ask(i: int) -> int:
        return client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=16,
                                              seed=i).usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        counts = list(pool.map(ask, range(6)))
    assert all(0 < c <= 16 for c in counts)
