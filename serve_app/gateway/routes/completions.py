"""POST /v1/completions (legacy text completion): a raw prompt, or several, continued by a text model.

Each prompt is one request to the model's replicas (they run concurrently when answered whole); its `n`
choices are numbered `prompt_index * n + choice`, as OpenAI numbers them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.contract import Completion
from serve_app.errors import InvalidRequest
from serve_app.gateway.body import JSONLimits, read_json
from serve_app.gateway.context import Usage, context_of
from serve_app.gateway.fan_out import gather_or_cancel
from serve_app.gateway.registry import ModelRegistry, ServedModel
from serve_app.gateway.response_cache import HEADER, CachedAnswer, ResponseCache, answer_from_cache
from serve_app.gateway.streaming import sse_response
from serve_app.protocol.chat import usage_dict
from serve_app.protocol.completions import (
    MAX_PROMPTS,
    CompletionRequest,
    completion_body,
    legacy_logprobs,
    text_choice,
)
from serve_app.protocol.validation import parse_model


class CompletionsRoute:
    def __init__(self, registry: ModelRegistry, body_limits: JSONLimits, cache: ResponseCache) -> None:
        self.registry = registry
        self.body_limits = body_limits
        self.cache = cache

    async def handle(self, request: Request) -> Response:
        context = context_of(request)
        req = parse_model(CompletionRequest, await read_json(request, self.body_limits))
        if not 1 <= len(req.prompts()) <= MAX_PROMPTS:
            raise InvalidRequest(f"prompt must be a string or a list of 1 to {MAX_PROMPTS} strings.", param="prompt")
        model = self.registry.for_caller(context, req.model, "chat")
        context.sampling = req.sampling_summary()
        cache_key = self.cache.key_for(model.cache, context, "completions", req)
        headers = {HEADER: "miss"} if cache_key else {}
        if cache_key and (cached := await self.cache.lookup(cache_key)) is not None:
            return answer_from_cache(cached, context, "cmpl")
        await context.reserve_tokens(model.reservation(req.token_estimate(), len(req.prompts()) * req.n))
        await self.registry.warm(model)
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        used = context.usage
        if not req.stream:
            results = await gather_or_cancel(*(model.backend.complete(req.for_prompt(p)) for p in req.prompts()))
            used.prompt_tokens = sum(r.usage.prompt_tokens for r in results)
            used.completion_tokens = sum(r.usage.completion_tokens for r in results)
            body = completion_body(completion_id, req.model, _choices(req, results),
                                   usage_dict(used.prompt_tokens, used.completion_tokens))
            if cache_key:
                self.cache.store(cache_key, model.id, model.cache,
                                 CachedAnswer("json", body, None, used.prompt_tokens, used.completion_tokens))
            return JSONResponse(body, headers=headers)
        first_steps = model.backend.stream(req.for_prompt(req.prompts()[0]))
        first = await anext(first_steps)  # errors found up front keep their status code
        context.ttft = time.perf_counter() - context.started
        events = _chunks(req, model, completion_id, first, first_steps, used)
        if cache_key:
            events = self.cache.recording(cache_key, model.id, model.cache, events,
                                          lambda: (used.prompt_tokens, used.completion_tokens))
        return sse_response(events, headers=headers)


def _choices(req: CompletionRequest, results: list[Completion]) -> list[dict]:
    choices = []
    for p, (prompt, result) in enumerate(zip(req.prompts(), results, strict=True)):
        echoed = prompt if req.echo else ""
        for c, (text, finish, entries) in enumerate(result.choices):
            choices.append(text_choice(p * req.n + c, echoed + text, finish, legacy_logprobs(entries, len(echoed))))
    return choices


async def _chunks(req: CompletionRequest, model: ServedModel, completion_id: str, first,
                  first_steps: AsyncIterator, used: Usage) -> AsyncIterator[dict]:
    created = int(time.time())
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(choices: list[dict], usage: dict | None = None) -> dict:
        body = {"id": completion_id, "object": "text_completion", "created": created, "model": req.model,
                "choices": choices}
        if include_usage:
            body["usage"] = usage
        return body

    for p, prompt in enumerate(req.prompts()):  # one prompt after another, each streamed as it is generated
        before = (used.prompt_tokens, used.completion_tokens)  # the prompts already answered
        steps = first_steps if p == 0 else model.backend.stream(req.for_prompt(prompt))
        step = first if p == 0 else await anext(steps)
        offsets = [len(prompt) if req.echo else 0] * req.n
        if req.echo:
            for c in range(req.n):
                yield chunk([text_choice(p * req.n + c, prompt, None)])
        while True:
            for d in step.deltas:
                logprobs = legacy_logprobs(d.logprobs, offsets[d.index]) if d.logprobs is not None else None
                offsets[d.index] += len(d.text)
                if d.text or d.finish_reason or logprobs:
                    yield chunk([text_choice(p * req.n + d.index, d.text, d.finish_reason, logprobs)])
            if step.used is not None:  # as it goes: a client that leaves mid-stream pays for what was generated
                used.prompt_tokens = before[0] + step.used.prompt_tokens
                used.completion_tokens = before[1] + step.used.completion_tokens
            if step.usage is not None:
                break
            step = await anext(steps)
    if include_usage:
        yield chunk([], usage_dict(used.prompt_tokens, used.completion_tokens))
