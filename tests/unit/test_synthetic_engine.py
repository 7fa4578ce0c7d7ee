"""The synthetic engine keeps the engine contract (choices, finish reasons, usage, context checks, pacing)."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.engines.options import SyntheticOptions
from deployments.engines.synthetic import WORDS, SyntheticEngine
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


def test_the_prompt_count_is_the_prompt_usage():
    engine, asked = SyntheticEngine(SyntheticOptions(tokens_per_s=0)), request(max_tokens=3)
    result = asyncio.run(collect(engine.generate(asked), 1))
    assert asyncio.run(engine.count_prompt_tokens(asked)) == result.usage.prompt_tokens > 0


def test_every_step_says_the_usage_so_far_and_the_last_the_final_usage():
    async def steps():
        return [step async for step in SyntheticEngine(SyntheticOptions()).generate(request(n=2, max_tokens=4))]

    got = asyncio.run(steps())
    assert [s.progress.completion_tokens for s in got[:-1]] == [2, 4, 6] and all(s.usage is None for s in got[:-1])
    assert got[-1].usage.completion_tokens == 8 and got[-1].progress is None


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


async def read_late(engine: SyntheticEngine, max_tokens: int, late_s: float) -> list[str]:
    """Each step's text, reading the first at once and every later one `late_s` after the previous."""
    steps = engine.generate(request(max_tokens=max_tokens))
    texts = []
    async for step in steps:
        texts.append("".join(d.text for d in step.deltas))
        await asyncio.sleep(late_s)
    return texts


def test_a_late_read_gets_every_word_due_by_then_unless_told_otherwise():
    merged = asyncio.run(read_late(SyntheticEngine(SyntheticOptions(tokens_per_s=200)), 40, 0.05))
    assert "".join(merged).split() == (list(WORDS) * 5)[:40]
    assert len(merged) < 12 and max(len(text.split()) for text in merged) > 1
    one_by_one = asyncio.run(read_late(SyntheticEngine(SyntheticOptions(tokens_per_s=200, merge_late_reads=False)),
                                       8, 0.02))
    assert [len(text.split()) for text in one_by_one] == [1] * 8
