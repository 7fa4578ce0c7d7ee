"""Typed API errors rendered as HTTP: the OpenAI envelope, and Starlette's own errors mapped onto it."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from serve_app.errors import APIError, InvalidRequest, MethodNotAllowed, RouteNotFound, store_unavailable

log = logging.getLogger(__name__)


def error_response(error: APIError, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


async def api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


async def store_error(request: Request, exc: Exception) -> JSONResponse:
    """The state store failed mid-query (connection lost, failover): retryable, like a store that is down."""
    log.warning("state store error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(store_unavailable())


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's routing and parsing errors, in our envelope with their own status."""
    if exc.status_code == 405:
        error: APIError = MethodNotAllowed(request.method, request.url.path)
        error.headers.update(exc.headers or {})  # keeps `Allow`
    elif exc.status_code == 404:
        error = RouteNotFound(request.method, request.url.path)
    else:
        error = InvalidRequest(str(exc.detail))
        error.status_code = exc.status_code
    return error_response(error)
