"""The gateway's ASGI app: routes, middleware and error rendering; servable by Ray Serve or plain uvicorn."""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serve_app.config import APIKey, AppArgs, LimitsConfig, StateConfig
from serve_app.errors import APIError
from serve_app.gateway.body import BodyDeadline, JSONLimits
from serve_app.gateway.budgets import BudgetGuard
from serve_app.gateway.chat_pipeline import ChatPipeline
from serve_app.gateway.errors import api_error, http_error, store_error
from serve_app.gateway.inputs.image_fetch import ImageFetcher
from serve_app.gateway.inputs.image_parts import ImageInputs
from serve_app.gateway.inputs.images import ImageLimits
from serve_app.gateway.metrics import Metrics, NoMetrics
from serve_app.gateway.middleware import (
    AuthMiddleware,
    BatchCallerMiddleware,
    BudgetMiddleware,
    MeteringMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
)
from serve_app.gateway.openapi import openapi_document
from serve_app.gateway.registry import ModelRegistry
from serve_app.gateway.response_cache import ResponseCache
from serve_app.gateway.routes.audio import TranscriptionRoute
from serve_app.gateway.routes.batches import BatchesRoute
from serve_app.gateway.routes.chat import ChatRoute
from serve_app.gateway.routes.completions import CompletionsRoute
from serve_app.gateway.routes.embeddings import EmbeddingsRoute
from serve_app.gateway.routes.files import FilesRoute
from serve_app.gateway.routes.models import ModelsRoute
from serve_app.gateway.routes.playground import PlaygroundRoute
from serve_app.gateway.routes.responses import ResponsesRoute
from serve_app.gateway.routes.usage import UsageRoute
from serve_app.gateway.scale_to_zero import ReplicaCounts
from serve_app.security.auth import KeyStore
from serve_app.security.local_admission import LocalAdmission
from serve_app.security.rate_limit import Limiter, SharedLimiter
from serve_app.state.setup import State


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _openapi_route() -> Route:
    try:
        version = importlib.metadata.version("ray-openai-endpoint")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        version = "0"
    document = openapi_document(version)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return Route("/openapi.json", openapi, methods=["GET"])


def _image_inputs(limits: LimitsConfig) -> ImageInputs:
    fetch = limits.image_fetch
    return ImageInputs(ImageLimits(limits.max_image_bytes, limits.max_image_pixels, limits.max_request_pixels),
                       ImageFetcher(limits.max_image_bytes, fetch.timeout_s, fetch.max_redirects, fetch.allow))


def _body_deadline(limits: LimitsConfig) -> BodyDeadline:
    return BodyDeadline(limits.body_idle_timeout_s, limits.body_timeout_s)


def _public_routes() -> list[Route]:
    """Served without an API key: health, the API's description and the playground's static page."""
    playground = PlaygroundRoute()
    return [
        Route("/health", _health, methods=["GET"]),
        _openapi_route(),
        Route("/", playground.root, methods=["GET"]),
        Route("/playground", playground.page, methods=["GET"]),
        Route("/playground/{name:path}", playground.asset, methods=["GET"]),  # unknown names: 404
    ]


def _api_routes(registry: ModelRegistry, limits: LimitsConfig, state: State,
                wake_runner: Callable[[], Awaitable[None]] | None) -> list[Route]:
    models = ModelsRoute(registry)
    json_limits = JSONLimits(limits.max_request_bytes, limits.max_json_elements, _body_deadline(limits))
    cache = ResponseCache(state.cache)
    files = FilesRoute(state.files, state.config, _body_deadline(limits), limits.max_json_elements)
    batches = BatchesRoute(state.batches, state.files, registry, state.config, json_limits, wake_runner)
    chat = ChatPipeline(registry, _image_inputs(limits))  # one image decoder pool for both chat-shaped routes
    responses = ResponsesRoute(chat, state.responses, json_limits)
    return [
        Route("/v1/usage", UsageRoute(state.ledger).handle, methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.retrieve, methods=["GET"]),
        Route("/v1/chat/completions", ChatRoute(chat, json_limits, cache).handle, methods=["POST"]),
        Route("/v1/responses", responses.create, methods=["POST"]),
        Route("/v1/responses/input_tokens", responses.input_tokens, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", responses.input_items, methods=["GET"]),
        Route("/v1/completions", CompletionsRoute(registry, json_limits, cache).handle, methods=["POST"]),
        Route("/v1/embeddings", EmbeddingsRoute(registry, json_limits).handle, methods=["POST"]),
        Route("/v1/audio/transcriptions",
              TranscriptionRoute(registry, limits.max_audio_bytes, _body_deadline(limits)).handle, methods=["POST"]),
        Route("/v1/audio/translations",
              TranscriptionRoute(registry, limits.max_audio_bytes, _body_deadline(limits), "translate").handle,
              methods=["POST"]),
        Route("/v1/files", files.upload, methods=["POST"]),
        Route("/v1/files", files.list, methods=["GET"]),
        Route("/v1/files/{file_id}", files.retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", files.delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", files.content, methods=["GET"]),
        Route("/v1/batches", batches.create, methods=["POST"]),
        Route("/v1/batches", batches.list, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batches.retrieve, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", batches.cancel, methods=["POST"]),
    ]


def create_asgi_app(registry: ModelRegistry, keys: KeyStore, limits: LimitsConfig, limiter: Limiter,
                    metrics: Metrics | None = None, behind_serve_proxy: bool = False, *, state: State | None = None,
                    wake_runner: Callable[[], Awaitable[None]] | None = None, batch_caller: bool = False) -> Starlette:
    """`limiter`: the shared rate-limiter deployment's handle or a local one; `metrics`: Ray's under Serve;
    `state`: the durable store (default: the embedded SQLite one); `batch_caller`: the batch runner's own
    gateway, where the runner names the key (it never listens on a socket)."""
    state = state or State.open(StateConfig())
    public = [] if batch_caller else _public_routes()

    def is_public(path: str) -> bool:
        return any(route.path_regex.match(path) for route in public)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.close()  # a graceful stop writes the usage rows still queued

    auth = (Middleware(BatchCallerMiddleware, keys=keys) if batch_caller
            else Middleware(AuthMiddleware, keys=keys, is_public=is_public))
    return Starlette(
        routes=public + _api_routes(registry, limits, state, wake_runner),
        middleware=[
            Middleware(RequestContextMiddleware, echo_header=not behind_serve_proxy),
            auth,
            Middleware(MeteringMiddleware, metrics=metrics or NoMetrics(), ledger=state.ledger),
            Middleware(BudgetMiddleware, guard=BudgetGuard(state.ledger)),
            Middleware(RateLimitMiddleware, limiter=limiter),
        ],
        exception_handlers={APIError: api_error, HTTPException: http_error, SQLAlchemyError: store_error},
        lifespan=lifespan,
    )


def build_gateway(args: AppArgs, keys: list[APIKey], backends: dict[str, Any], limiter: SharedLimiter, *,
                  state: State | None = None, metrics: Metrics | None = None, status: ReplicaCounts | None = None,
                  behind_serve_proxy: bool = False, wake_runner: Callable[[], Awaitable[None]] | None = None,
                  batch_caller: bool = False) -> Starlette:
    """The one way the gateway is assembled: by the ingress replica under Serve, by the batch runner, and
    in-process for tests. `limiter`: the shared one, asked through this replica's LocalAdmission unless the
    config wants every request asked."""
    registry = ModelRegistry.from_config(args.models, backends, args.limits, status)
    admission = LocalAdmission(limiter) if args.ingress.local_admission else limiter
    return create_asgi_app(registry, KeyStore(keys, args.rate_limits, args.budgets), args.limits, admission, metrics,
                           behind_serve_proxy, state=state or State.open(args.state), wake_runner=wake_runner,
                           batch_caller=batch_caller)
