"""Fewer, larger stream items at high token rates: the first step goes at once (time to first token is
untouched), then whatever the engine produced during each interval goes as one merged step.

Each item a replica yields is a Ray object with its own bookkeeping on two hops (model replica -> gateway ->
proxy), which caps the items per second a replica can stream; vLLM's own server merges outputs while its
consumer lags for the same reason. When steps come slower than the interval (a CPU engine) nothing is held:
each is sent as soon as it arrives.

Under load the interval grows with the streams in flight (`stream_interval`), so a replica's items per second
stay about constant: at 64 streams of 100 tokens/s a fixed 20 ms would send 3,200 items/s, more than the Ray
hops and the gateway can carry on a small box (bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from serve_app.contract import GenerationStep, merge_steps

_END = object()
# Beyond this, chunks arrive visibly jerky: the interval stops growing and items per second rise instead.
MAX_INTERVAL_S = 0.1


def stream_interval(floor_s: float, streams: int, items_per_s: int | None) -> float:
    """The merge interval for one of `streams` streams in flight on a replica that aims at `items_per_s`."""
    if floor_s <= 0 or not items_per_s:
        return floor_s
    return max(floor_s, min(streams / items_per_s, MAX_INTERVAL_S))


async def paced(steps: AsyncIterator[GenerationStep], interval_s: float | Callable[[], float],
                *, engine_merges: bool = False) -> AsyncIterator[GenerationStep]:
    """`interval_s` may be a function, asked before each wait (the load changes while a stream runs).
    `engine_merges`: the engine's next step holds everything produced since the last read (vLLM's output
    collector with DELTA outputs does that), so the engine is read once per interval instead of being drained
    step by step: no wake-up of this replica per token."""
    interval = interval_s if callable(interval_s) else lambda: interval_s
    if interval() <= 0:
        async for step in steps:
            yield step
        return
    if engine_merges:
        async for step in _read_once_per_interval(steps, interval):
            yield step
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for step in steps:
                queue.put_nowait(step)
        except Exception as exc:  # noqa: BLE001 the engine's error reaches the caller in order, after its steps
            queue.put_nowait(exc)
        queue.put_nowait(_END)

    reader = asyncio.create_task(pump())
    try:
        first = True
        while True:
            if not first:
                await asyncio.sleep(interval())  # steps arriving meanwhile are merged into one item
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            first = False
            ready = [item for item in items if isinstance(item, GenerationStep)]
            if ready:
                yield merge_steps(ready)
            failure = next((item for item in items if isinstance(item, Exception)), None)
            if failure is not None:
                raise failure
            if items[-1] is _END:
                return
    finally:
        reader.cancel()  # the caller went away (or the stream ended): stop reading, let the engine abort
        await asyncio.gather(reader, return_exceptions=True)
        await steps.aclose()


async def _read_once_per_interval(steps: AsyncIterator[GenerationStep],
                                  interval: Callable[[], float]) -> AsyncIterator[GenerationStep]:
    try:
        wait = False  # the first step goes at once, and the end comes right after the step with usage
        while True:
            if wait:
                await asyncio.sleep(interval())  # the engine merges what it produces meanwhile
            try:
                step = await anext(steps)
            except StopAsyncIteration:
                return
            yield step
            wait = step.usage is None
    finally:
        await steps.aclose()  # the caller went away (or the stream ended): the engine aborts the request
