"""GET /v1/usage: per-key usage since start, for operators (admin keys only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.errors import Forbidden


class UsageRoute:
    def __init__(self, limiter) -> None:
        self.limiter = limiter

    async def handle(self, request: Request) -> JSONResponse:
        if not request.state.caller.admin:
            raise Forbidden("Only admin keys may read usage.")
        usage = await self.limiter.usage()
        return JSONResponse({"object": "usage", "keys": [{"key": name, **totals} for name, totals in sorted(usage.items())]})
