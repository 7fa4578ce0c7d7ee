"""Several calls of one request at once, all or nothing: asyncio.gather leaves the others running when one
fails, and a model replica's call that nobody awaits still runs to its end, using what no one is charged for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(*calls: Awaitable[T]) -> list[T]:
    """Every call's result in order; on the first failure (or when the caller is cancelled) the others are
    cancelled and waited for, and that failure is raised as it was (its status kept)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
