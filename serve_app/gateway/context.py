"""The typed per-request context: what the middleware and routes learn about a request, in one place.

The outermost middleware creates it (id, start time) before anything else runs; authentication fills
`caller`; routes fill `model`, `sampling`, `usage` and `ttft` and reserve tokens; rate limiting and metering
read it once the response is done. Each field has one writer, and a route reached without authentication fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from starlette.requests import Request
from starlette.types import Scope

from serve_app.errors import AuthenticationFailed
from serve_app.security.auth import Caller

_KEY = "endpoint_context"


@dataclass
class Usage:
    """What a request consumed: charged to its key's budgets and recorded in metrics and the access log."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0

    def as_dict(self) -> dict[str, float]:
        return {name: value for name, value in asdict(self).items() if value}


@dataclass
class RequestContext:
    request_id: str
    started: float  # perf_counter() when the request arrived
    caller: Caller | None = None  # set by AuthMiddleware for every non-public route
    model: str | None = None
    sampling: dict | None = None  # the request's sampling settings, for the access log
    ttft: float | None = None  # streamed chat: seconds to the first token
    usage: Usage = field(default_factory=Usage)
    cached: bool = False  # answered from the response cache: recorded as such, not charged to budgets
    batch_id: str | None = None  # a line of this batch, sent by the batch runner
    # Set by RateLimitMiddleware: holds part of the key's token budget before model work (429 if it cannot).
    reserve: Callable[[int], Awaitable[None]] | None = None
    reserved_tokens: int = 0

    async def reserve_tokens(self, tokens: int) -> None:
        if self.reserve is not None:
            await self.reserve(tokens)

    def authenticated(self) -> Caller:
        if self.caller is None:  # a route mounted without AuthMiddleware in front: refuse, never serve
            raise AuthenticationFailed()
        return self.caller


def attach(scope: Scope, context: RequestContext) -> None:
    scope.setdefault("state", {})[_KEY] = context


def context_of(scope_or_request: Scope | Request) -> RequestContext:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    return scope["state"][_KEY]
