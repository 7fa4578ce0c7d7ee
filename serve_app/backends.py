"""Adapters from the gateway's backend interface to Ray Serve deployment handles."""

from __future__ import annotations

import asyncio
import math
from typing import AsyncIterator

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.engines.protocol import ChunkTranscript, Completion, GenerationStep, Transcription
from serve_app.errors import ServiceUnavailable
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest


def _overloaded(model: str, exc: BackPressureError) -> ServiceUnavailable:
    retry = max(1, math.ceil(exc.retry_after_s or 1))
    return ServiceUnavailable(f"Model `{model}` is at capacity; retry in {retry} s.", code="model_overloaded",
                              headers={"Retry-After": str(retry)})


async def _relay(stream, model: str) -> AsyncIterator:
    """Items of a streaming handle call; closing this early (client gone) cancels the replica's work."""
    try:
        async for item in stream:
            yield item
    except BackPressureError as exc:
        raise _overloaded(model, exc) from None
    except (GeneratorExit, asyncio.CancelledError):
        # Only an unfinished call is cancelled: cancel() re-raises a call's own failure (e.g. the
        # BackPressureError above), which would replace the 503 we answer with Serve's plain-text one.
        stream.cancel()
        raise


class TextBackend:
    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        try:
            return await self._handle.complete.remote(request)
        except BackPressureError as exc:
            raise _overloaded(request.model, exc) from None

    def stream(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        return _relay(self._streaming.stream.remote(request), request.model)

    async def wake(self) -> None:
        await self._handle.ready.remote()


class SpeechBackend:
    """The gateway's view of a speech model: its coordinator deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        try:
            return await self._handle.transcribe.remote(audio, request)
        except BackPressureError as exc:
            raise _overloaded(request.model, exc) from None

    def stream(self, audio: bytes, request: TranscriptionRequest) -> AsyncIterator[ChunkTranscript]:
        return _relay(self._streaming.stream.remote(audio, request), request.model)

    async def wake(self) -> None:
        await self._handle.ready.remote()


class SpeechWorkersBackend:
    """The coordinator's view of the speech replicas: one call per chunk, spread by Serve's router."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def transcribe_samples(self, samples, offset: float, request: TranscriptionRequest) -> ChunkTranscript:
        try:
            return await self._handle.transcribe_samples.remote(samples, offset, request)
        except BackPressureError as exc:
            raise _overloaded(request.model, exc) from None


class LimiterBackend:
    """The gateway's view of the shared rate-limiter deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def admit(self, key: str, limits):
        return await self._handle.admit.remote(key, limits)

    async def charge(self, key: str, limits, amounts: dict[str, float]) -> None:
        await self._handle.charge.remote(key, limits, amounts)

    async def usage(self) -> dict:
        return await self._handle.usage.remote()
