"""Pure-ASGI middleware: request ids, API-key checks and the last-resort 500, around every route."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import APIError, ServerError, error_response
from serve_app.security.auth import KeyStore

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PUBLIC_PATHS = frozenset({"/health"})


class RequestContextMiddleware:
    """Gives each request an id (kept in scope['state']) and turns unhandled exceptions into a bare 500.

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
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.echo_header:
                    MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if not started:
                await error_response(ServerError(), request_id if self.echo_header else None)(scope, receive, send)


class AuthMiddleware:
    """Every route but the public ones needs a valid API secret."""

    def __init__(self, app: ASGIApp, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            try:
                self.keys.authenticate(Headers(scope=scope))
            except APIError as exc:
                return await error_response(exc)(scope, receive, send)
        await self.app(scope, receive, send)
