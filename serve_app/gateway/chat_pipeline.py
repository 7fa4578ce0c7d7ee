"""The steps a chat-shaped request takes around its model, shared by /v1/chat/completions and /v1/responses so
both check, route, admit, call and meter alike: checks before any model work, the model the key may use, its
images resolved, tokens reserved and a cold model woken, then the engine's answer with its usage recorded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from serve_app.contract import Completion, GenerationStep, TokenUsage
from serve_app.errors import InvalidRequest
from serve_app.gateway.context import RequestContext, Usage
from serve_app.gateway.inputs.image_parts import ImageInputs
from serve_app.gateway.inputs.schemas import check_schemas
from serve_app.gateway.registry import ModelRegistry, ServedModel
from serve_app.gateway.tool_calls import AssistantAnswer, assistant_answer
from serve_app.protocol.chat import ChatCompletionRequest


def record_usage(used: Usage, tokens: TokenUsage) -> None:
    """What the metering middleware charges the key once the response is done."""
    used.prompt_tokens, used.completion_tokens = tokens.prompt_tokens, tokens.completion_tokens


class ChatPipeline:
    def __init__(self, registry: ModelRegistry, images: ImageInputs) -> None:
        self.registry = registry
        self.images = images

    @staticmethod
    def check(chat: ChatCompletionRequest) -> None:
        """Cross-field rules and client JSON Schemas: 400s before anything else happens."""
        chat.check_tool_use()
        check_schemas(chat)

    def model_for(self, context: RequestContext, chat: ChatCompletionRequest) -> ServedModel:
        model = self.registry.for_caller(context, chat.model, "chat")
        if chat.reasoning_effort is not None and model.reasoning_parser is None:
            raise InvalidRequest(f"Model `{model.id}` does not think before answering: `reasoning_effort` is only "
                                 "accepted by reasoning models.", param="reasoning_effort")
        context.sampling = chat.sampling_summary()
        return model

    async def with_images(self, context: RequestContext, chat: ChatCompletionRequest,
                          model: ServedModel) -> ChatCompletionRequest:
        """The request with each image fetched or decoded and checked (unchanged when it has none)."""
        if not chat.image_count():
            return chat
        model.require("image")
        chat = await self.images.resolve(chat, model.limits["max_images_per_request"])
        context.usage.images = chat.image_count()
        return chat

    async def admit(self, context: RequestContext, chat: ChatCompletionRequest, model: ServedModel) -> None:
        # before any model work: 429 if over budget
        await context.reserve_tokens(model.reservation(chat.token_estimate(), chat.n))
        await self.registry.warm(model)

    @staticmethod
    async def complete(context: RequestContext, chat: ChatCompletionRequest, model: ServedModel) -> Completion:
        result = await model.backend.complete(chat)
        record_usage(context.usage, result.usage)
        return result

    @staticmethod
    async def stream(context: RequestContext, chat: ChatCompletionRequest,
                     model: ServedModel) -> tuple[GenerationStep, AsyncIterator[GenerationStep]]:
        """The first step and the rest. The first is taken before answering, so errors found up front (context
        too long, bad params) still get their own status code instead of an in-stream error event."""
        steps = model.backend.stream(chat)
        first = await anext(steps)
        context.ttft = time.perf_counter() - context.started
        return first, steps

    @staticmethod
    def answer(chat: ChatCompletionRequest, model: ServedModel, text: str, finish: str | None) -> AssistantAnswer:
        return assistant_answer(text, finish, chat, model.tool_parser, model.reasoning_parser)
