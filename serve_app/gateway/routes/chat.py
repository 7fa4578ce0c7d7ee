"""POST /v1/chat/completions: validate, route to the model's deployment, answer whole or as SSE chunks.

With tools in play, each choice's text becomes an assistant message with `tool_calls` (gateway/tool_calls.py);
streamed, such an answer is sent when its choice is complete, as OpenAI's tool-call deltas."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.contract import GenerationStep
from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.chat_pipeline import ChatPipeline, record_usage
from serve_app.gateway.context import Usage, context_of
from serve_app.gateway.reasoning import ReasoningSplitter
from serve_app.gateway.registry import ServedModel
from serve_app.gateway.response_cache import HEADER, CachedAnswer, ResponseCache, answer_from_cache
from serve_app.gateway.streaming import sse_response
from serve_app.gateway.tool_calls import answer_deltas
from serve_app.protocol.chat import (
    ChatCompletionRequest,
    chunk_body,
    completion_body,
    delta_choice,
    usage_dict,
)
from serve_app.protocol.validation import parse_model


class ChatRoute:
    def __init__(self, pipeline: ChatPipeline, body_limits: JSONLimits, cache: ResponseCache) -> None:
        self.pipeline = pipeline
        self.body_limits = body_limits
        self.cache = cache

    async def handle(self, request: Request) -> Response:
        context = context_of(request)
        chat = parse_model(ChatCompletionRequest, await read_json(request, self.body_limits))
        self.pipeline.check(chat)
        model = self.pipeline.model_for(context, chat)
        chat = await self.pipeline.with_images(context, chat, model)
        cache_key = self.cache.key_for(model.cache, context, "chat", chat)
        headers = {HEADER: "miss"} if cache_key else {}
        if cache_key and (cached := await self.cache.lookup(cache_key)) is not None:
            return answer_from_cache(cached, context, "chatcmpl")
        await self.pipeline.admit(context, chat, model)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not chat.stream:
            result = await self.pipeline.complete(context, chat, model)
            usage = usage_dict(result.usage.prompt_tokens, result.usage.completion_tokens)
            answers = [(self.pipeline.answer(chat, model, text, finish), logprobs)
                       for text, finish, logprobs in result.choices]
            body = completion_body(completion_id, chat.model, answers, usage)
            if cache_key:
                self.cache.store(cache_key, model.id, model.cache, CachedAnswer(
                    "json", body, None, result.usage.prompt_tokens, result.usage.completion_tokens))
            return JSONResponse(body, headers=headers)
        first, steps = await self.pipeline.stream(context, chat, model)
        events = _chunks(chat, completion_id, first, steps, context.usage, model)
        if cache_key:
            used = context.usage
            events = self.cache.recording(cache_key, model.id, model.cache, events,
                                          lambda: (used.prompt_tokens, used.completion_tokens))
        return sse_response(events, headers=headers)


async def _chunks(chat: ChatCompletionRequest, completion_id: str, first: GenerationStep,
                  rest: AsyncIterator[GenerationStep], used: Usage, model: ServedModel) -> AsyncIterator[dict]:
    created = int(time.time())
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    buffered = chat.tool_mode() != "none"  # a tool call is known only once its choice is complete
    texts = [""] * chat.n
    thinking = [ReasoningSplitter(model.reasoning_parser) if model.reasoning_parser else None
                for _ in range(chat.n)]

    def chunk(choices: list[dict], usage: dict | None = None) -> dict:
        return chunk_body(completion_id, created, chat.model, choices, usage, include_usage)

    # As OpenAI: content "" opens a text answer, null one that may turn out to be tool calls (an SDK's stream
    # helper would otherwise end a tool-call answer with content "" and report a content delta).
    opening = {"role": "assistant", "content": None if buffered else ""}
    yield chunk([delta_choice(i, opening, None) for i in range(chat.n)])
    step = first
    while True:
        for d in step.deltas:
            if buffered:
                texts[d.index] += d.text
                if d.finish_reason:
                    answer = ChatPipeline.answer(chat, model, texts[d.index], d.finish_reason)
                    for delta in answer_deltas(answer):
                        yield chunk([delta_choice(d.index, delta, None)])
                    yield chunk([delta_choice(d.index, {}, answer.finish_reason)])
                continue
            splitter = thinking[d.index]
            if splitter is None:
                if d.text or d.logprobs:
                    yield chunk([delta_choice(d.index, {"content": d.text}, None, d.logprobs)])
            else:  # thinking as `reasoning_content` deltas, the answer as `content`
                pieces = splitter.feed(d.text) + (splitter.flush() if d.finish_reason else [])
                for kind, piece in pieces:
                    field = "reasoning_content" if kind == "reasoning" else "content"
                    yield chunk([delta_choice(d.index, {field: piece}, None)])
            if d.finish_reason:
                yield chunk([delta_choice(d.index, {}, d.finish_reason)])
        if step.used is not None:  # as it goes: a client that leaves mid-stream pays for what was generated
            record_usage(used, step.used)
        if step.usage is not None:
            if include_usage:
                yield chunk([], usage_dict(step.usage.prompt_tokens, step.usage.completion_tokens))
            return
        step = await anext(rest)
