"""The only Server-Sent Events writer: JSON events, one error event on failure, always `data: [DONE]`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from serve_app.errors import APIError, ServerError

log = logging.getLogger(__name__)


def sse_event(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"data: {data}\n\n"


def sse_response(events: AsyncIterator[dict], headers: dict[str, str] | None = None,
                 done_marker: bool = True) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield sse_event(event)
        except APIError as exc:
            yield sse_event(exc.body())
        except Exception:
            log.exception("stream failed")
            yield sse_event(ServerError().body())
        if done_marker:
            yield sse_event("[DONE]")

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )
