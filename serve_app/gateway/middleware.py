"""Pure-ASGI middleware around every route: request context and the last-resort 500, API-key checks,
rate limits, and metering. Each reads and writes only the typed RequestContext (gateway/context.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import APIError, RateLimited, RequestsRateLimited, ServerError, TokensRateLimited
from serve_app.gateway.budgets import BudgetGuard
from serve_app.gateway.context import RequestContext, Usage, attach, context_of
from serve_app.gateway.errors import error_response
from serve_app.gateway.metrics import Metrics
from serve_app.security.auth import KeyStore
from serve_app.security.rate_limit import Decision, Limiter, rate_limit_headers
from serve_app.state.ledger import UsageLedger, UsageRow, now_ms

log = logging.getLogger(__name__)
access_log = logging.getLogger("ray.serve")  # Serve's replica logger: lines land in the replica's log file
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Outermost: gives each request its context (id, start time) and turns unhandled exceptions into a bare 500.

    Behind the Ray Serve proxy the proxy already sets `x-request-id` on responses, so `echo_header` is off there.
    """

    def __init__(self, app: ASGIApp, echo_header: bool = True) -> None:
        self.app = app
        self.echo_header = echo_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else f"req-{uuid.uuid4().hex}"
        attach(scope, RequestContext(request_id, time.perf_counter()))
        started = client_gone = False

        async def send_with_id(message: Message) -> None:
            nonlocal started, client_gone
            if message["type"] == "http.response.start":
                started = True
                if self.echo_header:
                    MutableHeaders(scope=message)["x-request-id"] = request_id
            try:
                await send(message)
            except OSError:  # ASGI 2.4: a send after the client went away raises (uvicorn's ClientDisconnected)
                client_gone = True
                raise

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Starlette turns the send's OSError into ClientDisconnect: nobody is left to answer, no server error
            if client_gone and isinstance(exc, (OSError, ClientDisconnect)):
                log.info("client went away during request %s", request_id)
                return
            log.exception("unhandled error in request %s", request_id)
            if not started:
                await error_response(ServerError(), request_id if self.echo_header else None)(scope, receive, send)


class AuthMiddleware:
    """Every route but the public ones needs a valid API secret; the caller lands in the request context."""

    def __init__(self, app: ASGIApp, keys: KeyStore, is_public: Callable[[str], bool]) -> None:
        self.app = app
        self.keys = keys
        self.is_public = is_public  # from the app's route table (gateway/asgi.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.is_public(scope["path"]):
            try:
                context_of(scope).caller = self.keys.authenticate(Headers(scope=scope))
            except APIError as exc:
                return await error_response(exc)(scope, receive, send)
        await self.app(scope, receive, send)


class BatchCallerMiddleware:
    """Instead of AuthMiddleware in the batch runner's own gateway, which never listens on a socket: the runner
    names the key a line runs for, and the batch it belongs to."""

    KEY_HEADER, BATCH_HEADER = "x-batch-key", "x-batch-id"

    def __init__(self, app: ASGIApp, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            context = context_of(scope)
            try:
                context.caller = self.keys.by_name(headers.get(self.KEY_HEADER, ""))
            except APIError as exc:
                return await error_response(exc)(scope, receive, send)
            context.batch_id = headers.get(self.BATCH_HEADER)
        await self.app(scope, receive, send)


# The requests that spend a budget: model work, and batches of it. Reading files, batch results, stored
# responses and usage, and cancelling, stay open to a key whose budget is spent (else it cannot even see why).
SPENDING_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings",
                             "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/batches"})


class BudgetMiddleware:
    """Refuses a request that would spend (429) once its key's daily or monthly spend budget is used up."""

    def __init__(self, app: ASGIApp, guard: BudgetGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope) if scope["type"] == "http" else None
        spends = scope.get("method") == "POST" and scope.get("path") in SPENDING_ROUTES
        if spends and context is not None and context.caller is not None:
            try:
                await self.guard.check(context.caller)
            except APIError as exc:
                return await error_response(exc)(scope, receive, send)
        await self.app(scope, receive, send)


class RateLimitMiddleware:
    """Admits each authenticated request against its key's budgets and concurrency, adds the x-ratelimit-*
    headers, lets the route reserve tokens before model work, and settles what the request used (routes
    record it in the context's usage) once it has finished."""

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope) if scope["type"] == "http" else None
        if context is None or context.caller is None:  # public routes
            return await self.app(scope, receive, send)
        caller = context.caller
        try:
            decision = await self.limiter.admit(caller.name, caller.limits)
        except APIError as exc:  # the limiter itself is unavailable
            return await error_response(exc)(scope, receive, send)
        extra = rate_limit_headers(decision)
        if not decision.allowed:
            response = error_response(_refusal(decision, caller.name))
            response.raw_headers.extend(extra)
            return await response(scope, receive, send)

        async def reserve(tokens: int) -> None:
            reserved = await self.limiter.reserve(caller.name, caller.limits, tokens)
            if not reserved.allowed:
                raise _refusal(reserved, caller.name)
            context.reserved_tokens += tokens

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        context.reserve = reserve
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            charge = {} if context.cached else _charge(context.usage)  # a cache hit ran no model
            if charge or context.reserved_tokens or decision.lease:
                # shielded: a client that hung up still pays for what it used, and frees its place
                await asyncio.shield(self.limiter.charge(caller.name, caller.limits, charge, context.reserved_tokens,
                                                         decision.lease))


def _refusal(decision: Decision, key: str) -> RateLimited:
    why = f" ({decision.detail})" if decision.detail else ""
    # OpenAI names what ran out in the error's `type`: `tokens` for the per-minute token limit, else `requests`
    limited = TokensRateLimited if decision.limit_name == "tokens per minute" else RequestsRateLimited
    if decision.retry_after_s is None:
        # No Retry-After (the SDKs would wait it out, 60 s twice by default, for an answer that cannot change),
        # and x-should-retry: false, which the OpenAI SDKs obey before retrying a 429 at all.
        return limited(f"Request too large for {decision.limit_name} on key `{key}`{why}. Reduce the input or "
                       "max_tokens to run it: retrying will not help.", headers={"x-should-retry": "false"})
    retry = max(1, math.ceil(decision.retry_after_s))
    return limited(f"Rate limit reached for {decision.limit_name} on key `{key}`{why}. "
                   f"Please retry after {retry} s.", headers={"Retry-After": str(retry)})


def _charge(usage: Usage) -> dict[str, float]:
    charge = {"tokens": usage.prompt_tokens + usage.completion_tokens, "audio_seconds": usage.audio_seconds,
              "images": usage.images}
    return {k: v for k, v in charge.items() if v}


class MeteringMiddleware:
    """One access-log line, the metrics and a usage-ledger row for every authenticated request (429s included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, ledger: UsageLedger | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.ledger = ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope) if scope["type"] == "http" else None
        if context is None or context.caller is None:  # public routes are not metered
            return await self.app(scope, receive, send)
        status = 500  # unless a response starts: an exception that escapes becomes the generic 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            latency = time.perf_counter() - context.started
            usage, model, key = context.usage.as_dict(), context.model or "-", context.caller.name
            # The key's name, never the key.
            # Sampling settings (never message content) help operators answer "why did this reply differ".
            access_log.info("request_id=%s key=%s model=%s %s %s status=%s usage=%s sampling=%s latency_ms=%.1f"
                            " cached=%s batch=%s", context.request_id, key, model, scope["method"], scope["path"],
                            status, usage, context.sampling or {}, 1000 * latency, context.cached,
                            context.batch_id or "-")
            # The route's pattern as the label: raw paths (ids, any 404) would make a time series per request
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.record(key, model, route, status, usage, latency, context.ttft)
            if self.ledger is not None:
                self.ledger.record(_ledger_row(scope, context, status, latency))


def _ledger_row(scope: Scope, context: RequestContext, status: int, latency: float) -> UsageRow:
    route = scope.get("route")  # the route's pattern, so ids in paths do not make every row a new route
    used = context.usage
    return UsageRow(now_ms(), context.request_id, context.caller.name, context.model or "-",
                    (getattr(route, "path", None) or scope["path"])[:64], status, used.prompt_tokens,
                    used.completion_tokens, used.audio_seconds, used.images, 1000 * latency, context.cached,
                    context.batch_id)
