"""Size-capped request body reading: oversized uploads are refused before (or while) they are read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request

from serve_app.errors import FileTooLarge, InvalidRequest


def too_large(limit: int, what: str, param: str = "file") -> FileTooLarge:
    return FileTooLarge(f"file too large: {what} exceeds the maximum of {limit:,} bytes.", param=param)


async def read_stream_capped(chunks: AsyncIterator[bytes], declared_length: str | None, cap: int,
                             error: FileTooLarge) -> bytes:
    """All of `chunks`, refused with `error` before reading when the declared length is over `cap`, and
    as soon as the bytes read pass it (a lying or missing length costs nothing more)."""
    if declared_length and declared_length.isdigit() and int(declared_length) > cap:
        raise error
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise error
        parts.append(chunk)
    return b"".join(parts)


async def read_capped(request: Request, limit: int, what: str, slack: int = 0) -> bytes:
    """Read at most `limit + slack` bytes (slack: multipart framing around a file capped at `limit`)."""
    return await read_stream_capped(request.stream(), request.headers.get("content-length"), limit + slack,
                                    too_large(limit, what))


async def read_json(request: Request, limit: int) -> dict:
    raw = await read_capped(request, limit, "the request body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers, absurd nesting
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


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
