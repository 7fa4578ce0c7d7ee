"""Adapters from the gateway's backend interface to Ray Serve deployment handles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from serve_app.config import RateLimits
from serve_app.contract import ChunkTranscript, Completion, GenerationStep, Transcription
from serve_app.errors import model_overloaded
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.security.rate_limit import Decision


async def _relay(stream, model: str) -> AsyncIterator:
    """Items of a streaming handle call; closing this early (client gone) cancels the replica's work."""
    try:
        async for item in stream:
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
        try:
            return await getattr(self._handle, method).remote(*args)
        except BackPressureError as exc:
            raise model_overloaded(model, exc.retry_after_s) from None

    def _stream(self, method: str, model: str, *args: object) -> AsyncIterator:
        return _relay(getattr(self._streaming, method).remote(*args), model)

    async def wake(self) -> None:
        """Answered once a replica is up: starts one for a model scaled to zero."""
        await self._handle.ready.remote()


class TextBackend(_ModelBackend):
    async def complete(self, request: ChatCompletionRequest) -> Completion:
        return await self._call("complete", request.model, request)

    def stream(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        return self._stream("stream", request.model, request)


class SpeechBackend(_ModelBackend):
    """The gateway's view of a speech model: its coordinator deployment."""

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        return await self._call("transcribe", request.model, audio, request)

    def stream(self, audio: bytes, request: TranscriptionRequest) -> AsyncIterator[ChunkTranscript]:
        return self._stream("stream", request.model, audio, request)


class LimiterBackend:
    """The gateway's view of the shared rate-limiter deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def admit(self, key: str, limits: RateLimits) -> Decision:
        return await self._handle.admit.remote(key, limits)

    async def charge(self, key: str, limits: RateLimits, amounts: dict[str, float]) -> None:
        await self._handle.charge.remote(key, limits, amounts)

    async def usage(self) -> dict[str, dict[str, float]]:
        return await self._handle.usage.remote()
