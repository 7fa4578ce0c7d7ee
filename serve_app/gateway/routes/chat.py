"""POST /v1/chat/completions: validate, route to the model's deployment, answer whole or as SSE chunks."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.contract import GenerationStep
from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.context import Usage, context_of
from serve_app.gateway.inputs.image_parts import ImageInputs
from serve_app.gateway.registry import ModelRegistry
from serve_app.gateway.streaming import sse_response
from serve_app.protocol.chat import (
    ChatCompletionRequest,
    chunk_body,
    completion_body,
    delta_choice,
    usage_dict,
)
from serve_app.protocol.validation import parse_model


class ChatRoute:
    def __init__(self, registry: ModelRegistry, body_limits: JSONLimits, images: ImageInputs) -> None:
        self.registry = registry
        self.body_limits = body_limits
        self.images = images

    async def handle(self, request: Request) -> Response:
        context = context_of(request)
        chat = parse_model(ChatCompletionRequest, await read_json(request, self.body_limits))
        model = self.registry.for_caller(context, chat.model, "chat")
        context.sampling = chat.sampling_summary()
        if chat.image_count():
            model.require("image")
            chat = await self.images.resolve(chat, model.limits["max_images_per_request"])
            context.usage.images = chat.image_count()
        await context.reserve_tokens(chat.token_estimate())  # before any model work: 429 if over budget
        await self.registry.warm(model)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not chat.stream:
            result = await model.backend.complete(chat)
            usage = usage_dict(result.usage.prompt_tokens, result.usage.completion_tokens)
            context.usage.prompt_tokens = result.usage.prompt_tokens
            context.usage.completion_tokens = result.usage.completion_tokens
            return JSONResponse(completion_body(completion_id, chat.model, result.choices, usage))
        steps = model.backend.stream(chat)
        # Take the first step before answering, so errors found up front (context too long, bad params)
        # still get their own status code instead of an in-stream error event.
        first = await anext(steps)
        context.ttft = time.perf_counter() - context.started
        return sse_response(_chunks(chat, completion_id, first, steps, context.usage))


async def _chunks(chat: ChatCompletionRequest, completion_id: str, first: GenerationStep,
                  rest: AsyncIterator[GenerationStep], used: Usage) -> AsyncIterator[dict]:
    created = int(time.time())
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)

    def chunk(choices: list[dict], usage: dict | None = None) -> dict:
        return chunk_body(completion_id, created, chat.model, choices, usage, include_usage)

    yield chunk([delta_choice(i, {"role": "assistant", "content": ""}, None) for i in range(chat.n)])
    step = first
    while True:
        for d in step.deltas:
            if d.text or d.logprobs:
                yield chunk([delta_choice(d.index, {"content": d.text}, None, d.logprobs)])
            if d.finish_reason:
                yield chunk([delta_choice(d.index, {}, d.finish_reason)])
        if step.usage is not None:
            used.prompt_tokens, used.completion_tokens = step.usage.prompt_tokens, step.usage.completion_tokens
            if include_usage:
                yield chunk([], usage_dict(step.usage.prompt_tokens, step.usage.completion_tokens))
            return
        step = await anext(rest)
