"""Adapters from the gateway's backend interface to Ray Serve deployment handles.

Failures of the serving machinery become typed errors: a full queue is a 503 `model_overloaded`; a replica
that died is a 503 `model_unavailable` (retryable). A call that failed that way before producing anything is
retried once, which Serve routes to another replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from serve_app.config import RateLimits
from serve_app.contract import ChunkTranscript, Completion, Embeddings, GenerationStep, Transcription
from serve_app.errors import ServiceUnavailable, model_overloaded, model_unavailable, rate_limiter_unavailable
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest
from serve_app.protocol.embeddings import EmbeddingRequest
from serve_app.security.rate_limit import Decision

log = logging.getLogger(__name__)
# What a replica's death (or its deployment having none) looks like to a handle call.
REPLICA_LOST = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
CHARGE_RETRIES, CHARGE_RETRY_S = 10, 1.0  # a charge the rate limiter missed is sent again for ~10 s


async def _relay(start, model: str) -> AsyncIterator:
    """Items of a streaming handle call (`start()` makes it); closing this early (client gone) cancels the
    replica's work. A replica lost before the first item is retried once; after it, the stream fails."""
    stream = start()
    started = retried = False
    try:
        while True:
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                return
            except REPLICA_LOST:
                if started or retried:
                    raise model_unavailable(model) from None
                retried = True
                stream = start()
                continue
            started = True
            yield item
    except BackPressureError as exc:
        raise model_overloaded(model, exc.retry_after_s) from None
    except (GeneratorExit, asyncio.CancelledError):
        # Only an unfinished call is cancelled: cancel() re-raises a call's own failure (e.g. the
        # BackPressureError above), which would replace the 503 we answer with Serve's plain-text one.
        stream.cancel()
        raise


class _ModelBackend:
    """Calls on one model deployment's handle, whole or streamed; a full queue becomes our 503."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    async def _call(self, method: str, model: str, *args: object):
        for attempt in (1, 2):
            response = None
            try:
                response = getattr(self._handle, method).remote(*args)
                return await response
            except asyncio.CancelledError:
                # The request failed elsewhere or its client left: awaiting a response does not cancel the
                # replica's call (Serve cancels it only with its own request), so the work would run on unpaid.
                if response is not None:
                    response.cancel()
                raise
            except BackPressureError as exc:
                raise model_overloaded(model, exc.retry_after_s) from None
            except REPLICA_LOST:
                if attempt == 2:
                    raise model_unavailable(model) from None

    def _stream(self, method: str, model: str, *args: object) -> AsyncIterator:
        return _relay(lambda: getattr(self._streaming, method).remote(*args), model)

    async def wake(self) -> None:
        """Answered once a replica is up: starts one for a model scaled to zero."""
        await self._handle.ready.remote()


class TextBackend(_ModelBackend):
    async def complete(self, request: ChatCompletionRequest | CompletionRequest) -> Completion:
        return await self._call("complete", request.model, request)

    def stream(self, request: ChatCompletionRequest | CompletionRequest) -> AsyncIterator[GenerationStep]:
        return self._stream("stream", request.model, request)

    async def count_tokens(self, request: ChatCompletionRequest) -> int:
        return await self._call("count_tokens", request.model, request)


class SpeechBackend(_ModelBackend):
    """The gateway's view of a speech model: its coordinator deployment."""

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        return await self._call("transcribe", request.model, audio, request)

    def stream(self, audio: bytes, request: TranscriptionRequest) -> AsyncIterator[ChunkTranscript]:
        return self._stream("stream", request.model, audio, request)


class EmbeddingBackend(_ModelBackend):
    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        return await self._call("embed", request.model, request)


def backend_for(kind: str, handle: DeploymentHandle) -> _ModelBackend:
    """The backend that speaks to a model deployment of this kind."""
    return {"speech": SpeechBackend, "embedding": EmbeddingBackend}.get(kind, TextBackend)(handle)


class LimiterBackend:
    """The gateway's view of the shared rate-limiter deployment. If it cannot answer in time (restarting after
    a crash), requests are refused with a 503 rather than held or let through unmetered."""

    def __init__(self, handle: DeploymentHandle, timeout_s: float = 5.0) -> None:
        self._handle = handle
        self.timeout_s = timeout_s
        self._retrying: set[asyncio.Task] = set()

    async def _ask(self, method: str, *args: object):
        try:
            return await asyncio.wait_for(getattr(self._handle, method).remote(*args), self.timeout_s)
        except (TimeoutError, *REPLICA_LOST):
            raise rate_limiter_unavailable() from None

    async def admit(self, key: str, limits: RateLimits) -> Decision:
        return await self._ask("admit", key, limits)

    async def reserve(self, key: str, limits: RateLimits, tokens: int) -> Decision:
        return await self._ask("reserve", key, limits, tokens)

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float = 0.0,
                     lease: str | None = None) -> None:
        try:
            await self._ask("charge", key, limits, amounts, reserved_tokens, lease)
        except ServiceUnavailable:  # the answer has been sent: never fail the response; try again in the background
            task = asyncio.create_task(self._charge_later(key, limits, amounts, reserved_tokens, lease))
            self._retrying.add(task)  # held until done (the loop keeps only weak references to tasks)
            task.add_done_callback(self._retrying.discard)

    async def _charge_later(self, key: str, limits: RateLimits, amounts: dict[str, float], reserved_tokens: float,
                            lease: str | None) -> None:
        """Dropped, a finished request's place would stay taken for its lease's hour. A call that timed out here
        may have landed there: a debit counted twice refills within the minute, a lease released twice is a no-op."""
        for _ in range(CHARGE_RETRIES):
            await asyncio.sleep(CHARGE_RETRY_S)
            try:
                return await self._ask("charge", key, limits, amounts, reserved_tokens, lease)
            except ServiceUnavailable:
                continue
        log.warning("usage of key %s not charged (rate limiter unavailable): %s", key, amounts)

    async def apply(self, ops: list[tuple]) -> list[Decision]:
        return await self._ask("apply", ops)
