"""Exact-match answers for deterministic requests (temperature 0, or a `seed` given): keyed on the normalised
request, the route and the model's identity (engine, weights, engine options), scoped to the key unless the
model's cache is shared. Whole answers and streams are cached apart, each replayed with a fresh id."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from serve_app.config import ModelConfig
from serve_app.gateway.context import RequestContext
from serve_app.gateway.streaming import sse_response
from serve_app.state.cache import CacheStorage

HEADER = "x-cache"

# Request fields that change nothing in the answer (who asks, routing and tier hints): left out of the key, so
# they do not split the cache per end user or hint.
_NOT_THE_ANSWER = {"user", "safety_identifier", "prompt_cache_key", "service_tier", "store", "modalities"}


@dataclass(frozen=True)
class CachePolicy:
    ttl_s: float
    shared: bool
    identity: str  # changes when the model behind the id does


def cache_policy(config: ModelConfig) -> CachePolicy | None:
    if config.response_cache is None:
        return None
    served = config.model_dump(mode="json", include={"engine", "source", "engine_options"})
    identity = hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()
    return CachePolicy(config.response_cache.ttl_s, config.response_cache.shared, identity)


def is_deterministic(request: BaseModel) -> bool:
    return getattr(request, "temperature", None) == 0 or getattr(request, "seed", None) is not None


@dataclass(frozen=True)
class CachedAnswer:
    kind: str  # "json" or "sse"
    body: dict | None
    events: list[dict] | None
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    def __init__(self, storage: CacheStorage | None) -> None:
        self.storage = storage

    def key_for(self, policy: CachePolicy | None, context: RequestContext, route: str,
                request: BaseModel) -> str | None:
        """The cache key, or None when this request is not served from the cache."""
        if self.storage is None or policy is None or not is_deterministic(request):
            return None
        scope = "*" if policy.shared else context.authenticated().name
        normalised = request.model_dump(mode="json", exclude_none=True, exclude=_NOT_THE_ANSWER)
        material = json.dumps([scope, policy.identity, route, normalised], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(material.encode()).hexdigest()

    async def lookup(self, key: str) -> CachedAnswer | None:
        payload = await self.storage.get(key)
        return CachedAnswer(**json.loads(payload)) if payload is not None else None

    def store(self, key: str, model: str, policy: CachePolicy, answer: CachedAnswer) -> None:
        self.storage.put(key, model, json.dumps(answer.__dict__, ensure_ascii=False), policy.ttl_s)

    def recording(self, key: str, model: str, policy: CachePolicy, events: AsyncIterator[dict],
                  usage: Callable[[], tuple[int, int]]) -> AsyncIterator[dict]:
        """Pass a stream through and cache it once it has ended well (an error or a hang-up caches nothing)."""
        async def passthrough() -> AsyncIterator[dict]:
            seen = []
            async for event in events:
                seen.append(event)
                yield event
            self.store(key, model, policy, CachedAnswer("sse", None, seen, *usage()))

        return passthrough()


def answer_from_cache(answer: CachedAnswer, context: RequestContext, id_prefix: str) -> Response:
    """A hit, whole or streamed under a new id: no model work; its tokens are recorded as cached (the ledger
    shows them; budgets and rate limits do not count them)."""
    context.cached = True
    context.usage.prompt_tokens, context.usage.completion_tokens = answer.prompt_tokens, answer.completion_tokens
    fresh = {"id": f"{id_prefix}-{uuid.uuid4().hex}", "created": int(time.time())}
    if answer.kind == "json":
        return JSONResponse({**answer.body, **fresh}, headers={HEADER: "hit"})
    context.ttft = time.perf_counter() - context.started

    async def events() -> AsyncIterator[dict]:
        for event in answer.events:
            yield {**event, **fresh} if "id" in event else event

    return sse_response(events(), headers={HEADER: "hit"})
