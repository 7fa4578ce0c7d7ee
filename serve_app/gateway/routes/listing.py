"""OpenAI's cursor lists (`limit`, `after`; `{object: list, data, first_id, last_id, has_more}`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.errors import InvalidRequest


def page_params(request: Request, default_limit: int, most: int) -> tuple[int, str | None]:
    raw = request.query_params.get("limit")
    try:
        limit = default_limit if raw in (None, "") else int(raw)
    except ValueError:
        raise InvalidRequest("`limit` must be an integer.", param="limit") from None
    if not 1 <= limit <= most:
        raise InvalidRequest(f"`limit` must be between 1 and {most}.", param="limit")
    return limit, request.query_params.get("after") or None


def list_page(data: list[dict], has_more: bool) -> JSONResponse:
    return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": has_more})
