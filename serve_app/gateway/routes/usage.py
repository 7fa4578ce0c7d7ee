"""GET /v1/usage: per-key usage since start, for operators (admin keys only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.errors import Forbidden
from serve_app.gateway.context import context_of
from serve_app.security.rate_limit import Limiter


class UsageRoute:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def handle(self, request: Request) -> JSONResponse:
        if not context_of(request).authenticated().admin:
            raise Forbidden("Only admin keys may read usage.")
        usage = await self.limiter.usage()
        keys = [{"key": name, **totals} for name, totals in sorted(usage.items())]
        return JSONResponse({"object": "usage", "keys": keys})
