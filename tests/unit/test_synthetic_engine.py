"""The synthetic engine keeps the engine contract (choices, finish reasons, usage, context checks, pacing)."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.engines.options import SyntheticOptions
from deployments.engines.synthetic import SyntheticEngine
from serve_app.contract import collect
from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest


def request(**extra) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hello there"}], **extra)


def test_every_choice_gets_max_tokens_words_and_usage_counts_them():
    result = asyncio.run(collect(SyntheticEngine(SyntheticOptions()).generate(request(n=2, max_tokens=5)), 2))
    assert [len(text.split()) for text, _, _ in result.choices] == [5, 5]
    assert [finish for _, finish, _ in result.choices] == ["length", "length"]
    assert result.usage.completion_tokens == 10 and result.usage.prompt_tokens > 0


def test_stop_strings_end_a_choice_with_stop():
    result = asyncio.run(collect(SyntheticEngine(SyntheticOptions()).generate(request(stop="dolor", max_tokens=9)), 1))
    text, finish, _ = result.choices[0]
    assert finish == "stop" and "dolor" not in text


def test_the_context_is_enforced_like_a_real_engine():
    engine = SyntheticEngine(SyntheticOptions(max_model_len=64))
    with pytest.raises(InvalidRequest) as err:
        asyncio.run(collect(engine.generate(request(max_tokens=100)), 1))
    assert err.value.code == "context_length_exceeded"


def test_words_come_at_the_configured_rate():
    engine = SyntheticEngine(SyntheticOptions(tokens_per_s=100))
    started = time.monotonic()
    asyncio.run(collect(engine.generate(request(max_tokens=20)), 1))
    assert 0.18 <= time.monotonic() - started < 1.0
