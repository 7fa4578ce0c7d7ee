"""The gateway's ASGI app: routes, middleware and error rendering; servable by Ray Serve or plain uvicorn."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serve_app.args import LimitsConfig
from serve_app.errors import APIError, MethodNotAllowed, RouteNotFound, error_response
from serve_app.image_fetch import ImageFetcher
from serve_app.image_inputs import ImageInputs
from serve_app.images import ImageLimits
from serve_app.metrics import NoMetrics
from serve_app.middleware import AuthMiddleware, MeteringMiddleware, RateLimitMiddleware, RequestContextMiddleware
from serve_app.routes.audio import TranscriptionRoute
from serve_app.routes.chat import ChatRoute
from serve_app.routes.models import ModelsRoute
from serve_app.routes.playground import PlaygroundRoute
from serve_app.routes.usage import UsageRoute
from serve_app.routing import ModelRegistry
from serve_app.security.auth import KeyStore


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(request.method, request.url.path))
    return error_response(RouteNotFound(request.method, request.url.path))


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _image_inputs(limits: LimitsConfig) -> ImageInputs:
    fetch = limits.image_fetch
    return ImageInputs(ImageLimits(limits.max_image_bytes, limits.max_image_pixels),
                       ImageFetcher(limits.max_image_bytes, fetch.timeout_s, fetch.max_redirects, fetch.allow))


def create_gateway(
    registry: ModelRegistry, keys: KeyStore, limits: LimitsConfig, limiter, metrics=None,
    behind_serve_proxy: bool = False,
) -> Starlette:
    """`limiter` has async admit/charge/usage: the shared rate-limiter deployment's handle or a local one;
    `metrics` records per-request metrics (Ray's under Serve, none in-process)."""
    models = ModelsRoute(registry)
    usage = UsageRoute(limiter)
    playground = PlaygroundRoute()
    routes = [
        Route("/health", _health, methods=["GET"]),
        Route("/", playground.root, methods=["GET"]),
        Route("/playground", playground.page, methods=["GET"]),
        Route("/playground/{name}", playground.asset, methods=["GET"]),
        Route("/v1/usage", usage.handle, methods=["GET"]),
        Route("/v1/models", models.list, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.retrieve, methods=["GET"]),
        Route("/v1/chat/completions", ChatRoute(registry, limits.max_request_bytes, _image_inputs(limits)).handle,
              methods=["POST"]),
        Route("/v1/audio/transcriptions", TranscriptionRoute(registry, limits.max_audio_bytes).handle, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware, echo_header=not behind_serve_proxy),
            Middleware(AuthMiddleware, keys=keys),
            Middleware(MeteringMiddleware, metrics=metrics or NoMetrics()),
            Middleware(RateLimitMiddleware, limiter=limiter),
        ],
        exception_handlers={APIError: _api_error, HTTPException: _http_error},
    )
