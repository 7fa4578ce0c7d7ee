"""Stream pacing in the model replica: the first step at once, then one merged item per interval while steps
come faster than it; nothing held when they come slower; errors and early closes reach the engine."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.step_pacing import MAX_INTERVAL_S, paced, stream_interval
from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage, merge_steps


async def engine(steps: int, every_s: float, fail_after: int | None = None, closed: list | None = None):
    """Steps of one word each, `every_s` apart; the last carries usage and the finish."""
    try:
        for i in range(1, steps + 1):
            await asyncio.sleep(every_s)
            if fail_after is not None and i > fail_after:
                raise RuntimeError("engine failed")
            last = i == steps
            yield GenerationStep([ChoiceDelta(0, f"w{i} ", "length" if last else None)],
                                 TokenUsage(3, steps) if last else None)
    finally:
        if closed is not None:
            closed.append(True)


async def gather(stream) -> list[GenerationStep]:
    return [step async for step in stream]


def test_merge_keeps_text_finish_logprobs_and_the_last_usage():
    steps = [GenerationStep([ChoiceDelta(0, "a", None, [{"t": 1}]), ChoiceDelta(1, "x")]),
             GenerationStep([ChoiceDelta(0, "b", "stop", [{"t": 2}])], TokenUsage(1, 2))]
    merged = merge_steps(steps)
    assert [(d.index, d.text, d.finish_reason, d.logprobs) for d in merged.deltas] == [
        (0, "ab", "stop", [{"t": 1}, {"t": 2}]), (1, "x", None, None)]
    assert merged.usage == TokenUsage(1, 2)


def test_merge_keeps_the_latest_usage_so_far_until_the_final_usage():
    running = [GenerationStep([ChoiceDelta(0, "a")], progress=TokenUsage(3, 1)),
               GenerationStep([ChoiceDelta(0, "b")], progress=TokenUsage(3, 2))]
    assert merge_steps(running).progress == TokenUsage(3, 2) and merge_steps(running).usage is None
    ended = merge_steps([*running, GenerationStep([ChoiceDelta(0, "c", "stop")], TokenUsage(3, 3))])
    assert ended.usage == ended.used == TokenUsage(3, 3) and ended.progress is None


def test_fast_steps_are_merged_after_the_first():
    items = asyncio.run(gather(paced(engine(60, 0.002), 0.03)))
    assert items[0].deltas[0].text == "w1 "  # the first token is not held back
    assert len(items) < 20
    assert "".join(d.text for item in items for d in item.deltas) == "".join(f"w{i} " for i in range(1, 61))
    assert items[-1].usage == TokenUsage(3, 60) and items[-1].deltas[-1].finish_reason == "length"


def test_slow_steps_pass_one_by_one():
    items = asyncio.run(gather(paced(engine(5, 0.05), 0.01)))
    assert [item.deltas[0].text for item in items] == [f"w{i} " for i in range(1, 6)]


def test_zero_interval_is_every_step():
    assert len(asyncio.run(gather(paced(engine(10, 0.0), 0.0)))) == 10


def test_an_engine_error_arrives_after_the_steps_before_it():
    received: list[str] = []

    async def run():
        async for item in paced(engine(10, 0.001, fail_after=4), 0.01):
            received.extend(d.text for d in item.deltas)

    with pytest.raises(RuntimeError, match="engine failed"):
        asyncio.run(run())
    assert "".join(received) == "w1 w2 w3 w4 "


def test_a_caller_that_leaves_closes_the_engine():
    closed: list[bool] = []

    async def run():
        stream = paced(engine(1000, 0.001, closed=closed), 0.01)
        await anext(stream)
        await anext(stream)
        await stream.aclose()

    asyncio.run(run())
    assert closed == [True]


def test_the_interval_grows_with_the_streams_in_flight_up_to_a_ceiling():
    assert stream_interval(0.02, 1, 1000) == 0.02  # few streams: the configured interval
    assert stream_interval(0.02, 20, 1000) == 0.02
    assert stream_interval(0.02, 64, 1000) == pytest.approx(0.064)  # ~1,000 items/s for the whole replica
    assert stream_interval(0.02, 10_000, 1000) == MAX_INTERVAL_S  # never visibly jerky
    assert stream_interval(0.02, 64, None) == 0.02  # no budget: fixed
    assert stream_interval(0.0, 64, 1000) == 0.0  # pacing off stays off


def test_an_interval_function_is_asked_again_before_each_wait():
    asked: list[int] = []

    def interval() -> float:
        asked.append(1)
        return 0.01

    items = asyncio.run(gather(paced(engine(20, 0.002), interval)))
    assert "".join(d.text for item in items for d in item.deltas) == "".join(f"w{i} " for i in range(1, 21))
    assert len(asked) >= len(items)  # once up front, then before every merged item after the first


async def clock_engine(words: int, every_s: float, reads: list, closed: list | None = None):
    """Like vLLM's output collector: a read returns every word produced since the last one (waiting only when
    none is due yet). The first read is the prefill's one word, as on vLLM, however late the reader wakes."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    try:
        while sent < words:
            await asyncio.sleep(max(0.0, start + (sent + 1) * every_s - loop.time()))
            due = 1 if sent == 0 else min(words, max(sent + 1, int((loop.time() - start) / every_s)))
            reads.append(due - sent)
            text = "".join(f"w{i} " for i in range(sent + 1, due + 1))
            sent = due
            last = sent == words
            yield GenerationStep([ChoiceDelta(0, text, "length" if last else None)],
                                 TokenUsage(3, words) if last else None)
    finally:
        if closed is not None:
            closed.append(True)


def test_an_engine_that_merges_is_read_once_per_interval():
    reads: list[int] = []
    items = asyncio.run(gather(paced(clock_engine(60, 0.002, reads), 0.03, engine_merges=True)))
    assert items[0].deltas[0].text == "w1 "  # the first token is not held back
    assert "".join(d.text for item in items for d in item.deltas) == "".join(f"w{i} " for i in range(1, 61))
    assert items[-1].usage == TokenUsage(3, 60) and items[-1].deltas[-1].finish_reason == "length"
    assert len(reads) == len(items) < 20  # one read per item: the engine was not drained step by step
    assert max(reads) > 1


def test_a_merging_engine_is_closed_when_the_caller_leaves_and_its_error_arrives():
    closed: list[bool] = []

    async def leave():
        stream = paced(clock_engine(1000, 0.001, [], closed), 0.01, engine_merges=True)
        await anext(stream)
        await anext(stream)
        await stream.aclose()

    asyncio.run(leave())
    assert closed == [True]
    with pytest.raises(RuntimeError, match="engine failed"):
        asyncio.run(gather(paced(engine(10, 0.001, fail_after=4), 0.01, engine_merges=True)))


def test_a_merging_engine_stream_ends_right_after_its_last_step():
    t0 = time.monotonic()
    items = asyncio.run(gather(paced(clock_engine(3, 0.001, []), 0.3, engine_merges=True)))
    assert items[-1].usage == TokenUsage(3, 3)
    assert time.monotonic() - t0 < 0.55  # one interval after the first step, not a second one before the end
