"""Request bodies read within bounds: oversized uploads are refused before (or while) they are read, and a
client that sends too slowly is cut off with a 408 instead of holding a connection forever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request

from serve_app.errors import FileTooLarge, RequestTimeout
from serve_app.gateway.json_guard import parse_json_object


@dataclass(frozen=True)
class BodyDeadline:
    idle_s: float  # longest wait for the next piece of the body
    total_s: float  # longest time to receive the whole body


@dataclass(frozen=True)
class JSONLimits:
    max_bytes: int
    max_elements: int
    deadline: BodyDeadline


def too_large(limit: int, what: str, param: str = "file") -> FileTooLarge:
    return FileTooLarge(f"file too large: {what} exceeds the maximum of {limit:,} bytes.", param=param)


async def read_stream_capped(chunks: AsyncIterator[bytes], declared_length: str | None, cap: int,
                             error: FileTooLarge, deadline: BodyDeadline | None = None) -> bytes:
    """All of `chunks`, refused with `error` before reading when the declared length is over `cap`, and
    as soon as the bytes read pass it (a lying or missing length costs nothing more)."""
    # isascii: str.isdigit() also takes digits int() refuses ("²"), a 500 from a crafted header
    if declared_length and declared_length.isascii() and declared_length.isdigit() and int(declared_length) > cap:
        raise error
    parts, size = [], 0
    async for chunk in _within(chunks, deadline):
        size += len(chunk)
        if size > cap:
            raise error
        parts.append(chunk)
    return b"".join(parts)


async def _within(chunks: AsyncIterator[bytes], deadline: BodyDeadline | None) -> AsyncIterator[bytes]:
    if deadline is None:
        async for chunk in chunks:
            yield chunk
        return
    ends = time.monotonic() + deadline.total_s
    iterator = aiter(chunks)
    while True:
        wait = min(deadline.idle_s, ends - time.monotonic())
        try:
            chunk = await asyncio.wait_for(anext(iterator), max(wait, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"The request body did not arrive in time (at most {deadline.idle_s:g} s between pieces and "
                f"{deadline.total_s:g} s in all).") from None
        yield chunk


async def read_capped(request: Request, limit: int, what: str, slack: int = 0,
                      deadline: BodyDeadline | None = None) -> bytes:
    """Read at most `limit + slack` bytes (slack: multipart framing around a file capped at `limit`)."""
    return await read_stream_capped(request.stream(), request.headers.get("content-length"), limit + slack,
                                    too_large(limit, what), deadline)


async def read_json(request: Request, limits: JSONLimits) -> dict:
    raw = await read_capped(request, limits.max_bytes, "the request body", deadline=limits.deadline)
    return parse_json_object(raw, limits.max_elements)


def replay(body: bytes):
    """An ASGI receive callable that hands an already-read body to a new Request (for form parsing)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
