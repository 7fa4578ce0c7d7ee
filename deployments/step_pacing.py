"""Fewer, larger stream items at high token rates: the first step goes at once (time to first token is
untouched), then whatever the engine produced during each interval goes as one merged step.

Each item a replica yields is a Ray object with its own bookkeeping on two hops (model replica -> gateway ->
proxy), which caps the items per second a replica can stream; vLLM's own server merges outputs while its
consumer lags for the same reason. When steps come slower than the interval (a CPU engine) nothing is held:
each is sent as soon as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from serve_app.contract import GenerationStep, merge_steps

_END = object()


async def paced(steps: AsyncIterator[GenerationStep], interval_s: float) -> AsyncIterator[GenerationStep]:
    if interval_s <= 0:
        async for step in steps:
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
                await asyncio.sleep(interval_s)  # steps arriving meanwhile are merged into one item
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
