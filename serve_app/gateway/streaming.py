"""The only Server-Sent Events writer: JSON events, one error event on failure, then `data: [DONE]` (chat,
completions) or, for the Responses API, events named by their `type` and no done marker, as OpenAI sends them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from serve_app.errors import APIError, ServerError

log = logging.getLogger(__name__)


def sse_event(payload: dict | str, named: bool = False) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    event = f"event: {payload['type']}\n" if named and isinstance(payload, dict) else ""
    return f"{event}data: {data}\n\n"


def sse_response(events: AsyncIterator[dict], headers: dict[str, str] | None = None,
                 done_marker: bool = True, named_events: bool = False,
                 error_event: Callable[[APIError], dict] | None = None) -> StreamingResponse:
    """`named_events`: an `event:` line with each event's `type`; `error_event`: the event a failure after the
    stream started becomes (default: the error envelope)."""
    as_event = error_event or (lambda exc: exc.body())

    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield sse_event(event, named_events)
        except APIError as exc:
            yield sse_event(as_event(exc), named_events)
        except Exception:
            log.exception("stream failed")
            yield sse_event(as_event(ServerError()), named_events)
        if done_marker:
            yield sse_event("[DONE]")

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )
