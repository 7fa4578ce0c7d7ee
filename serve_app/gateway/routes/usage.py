"""GET /v1/usage: aggregates from the durable usage ledger, shaped like OpenAI's usage API (buckets of
results, `page`/`next_page` pagination). Admin keys see every key; any other key sees its own usage."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.errors import InvalidRequest
from serve_app.gateway.context import context_of
from serve_app.state.ledger import BUCKET_WIDTHS_S, GROUPS, UsageLedger

# Buckets per page by width: (default, most), as OpenAI's usage API pages them.
_PAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
_LATEST = 253_402_300_799  # 9999-12-31T23:59:59Z: later instants overflow the store's integers


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"`{name}` must be an integer (unix seconds for times).", param=name) from None


def _group_by(request: Request) -> list[str]:
    values = request.query_params.getlist("group_by") + request.query_params.getlist("group_by[]")
    groups = [g.strip() for value in values for g in value.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise InvalidRequest(f"`group_by` may hold {sorted(GROUPS)}, not {unknown}.", param="group_by")
    return list(dict.fromkeys(groups))


class UsageRoute:
    def __init__(self, ledger: UsageLedger) -> None:
        self.ledger = ledger

    async def handle(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        start = _int_param(request, "start_time")
        if start is None:
            raise InvalidRequest("`start_time` (unix seconds, inclusive) is required.", param="start_time")
        end = _int_param(request, "end_time", int(time.time()) + 1)
        width_name = request.query_params.get("bucket_width", "1d")
        if width_name not in BUCKET_WIDTHS_S:
            raise InvalidRequest(f"`bucket_width` must be one of {list(BUCKET_WIDTHS_S)}.", param="bucket_width")
        width = BUCKET_WIDTHS_S[width_name]
        default_limit, most = _PAGE_LIMITS[width_name]
        limit = _int_param(request, "limit", default_limit)
        if not 1 <= limit <= most:
            raise InvalidRequest(f"`limit` must be 1 to {most} buckets for bucket_width {width_name}.", param="limit")
        page = _int_param(request, "page", start)
        if not 0 <= start < end <= _LATEST or not start <= page < end or (page - start) % width:
            raise InvalidRequest(f"need 0 <= start_time < end_time <= {_LATEST} (year 9999), and `page` as "
                                 "returned in `next_page`.",
                                 param="page" if request.query_params.get("page") else "start_time")
        group_by = _group_by(request)
        page_end = min(end, page + limit * width)
        found = await self.ledger.buckets(page, page_end, width, group_by, None if caller.admin else caller.name)
        data = [{"object": "bucket", "start_time": t, "end_time": min(t + width, end), "results": found.get(t, [])}
                for t in range(page, page_end, width)]
        more = page_end < end
        return JSONResponse({"object": "page", "data": data, "has_more": more,
                             "next_page": str(page_end) if more else None})
