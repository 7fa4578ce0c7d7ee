"""POST /v1/embeddings: validate, route to the embedding model's deployment, answer floats or base64."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.context import context_of
from serve_app.gateway.registry import ModelRegistry
from serve_app.protocol.embeddings import EmbeddingRequest, embedding_body
from serve_app.protocol.validation import parse_model

# Above this many vectors the JSON is written off the event loop (2,048 x 1,024 floats take ~0.5 s).
LARGE_ANSWER = 64


class EmbeddingsRoute:
    def __init__(self, registry: ModelRegistry, body_limits: JSONLimits) -> None:
        self.registry = registry
        self.body_limits = body_limits

    async def handle(self, request: Request) -> Response:
        context = context_of(request)
        req = parse_model(EmbeddingRequest, await read_json(request, self.body_limits))
        model = self.registry.for_caller(context, req.model, "embedding")
        await context.reserve_tokens(req.token_estimate())  # before any model work: 429 if over budget
        await self.registry.warm(model)
        result = await model.backend.embed(req)
        context.usage.prompt_tokens = result.prompt_tokens

        def answer() -> Response:
            return JSONResponse(embedding_body(req.model, result.vectors, req.encoding_format, result.prompt_tokens))

        return await asyncio.to_thread(answer) if len(result.vectors) > LARGE_ANSWER else answer()
