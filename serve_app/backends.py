"""Adapters from the gateway's backend interface to Ray Serve deployment handles."""

from __future__ import annotations

from typing import AsyncIterator

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.engines.protocol import ChunkTranscript, Completion, GenerationStep, Transcription
from serve_app.errors import ServiceUnavailable
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest


def _overloaded(model: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Model `{model}` is at capacity; retry shortly.", code="model_overloaded", headers={"Retry-After": "1"}
    )


class TextBackend:
    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        try:
            return await self._handle.complete.remote(request)
        except BackPressureError:
            raise _overloaded(request.model) from None

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        steps = self._streaming.stream.remote(request)
        try:
            async for step in steps:
                yield step
        except BackPressureError:
            raise _overloaded(request.model) from None
        finally:
            steps.cancel()  # client gone or stream done: stop the replica's generation too


class SpeechBackend:
    """The gateway's view of a speech model: its coordinator deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        try:
            return await self._handle.transcribe.remote(audio, request)
        except BackPressureError:
            raise _overloaded(request.model) from None

    async def stream(self, audio: bytes, request: TranscriptionRequest) -> AsyncIterator[ChunkTranscript]:
        pieces = self._streaming.stream.remote(audio, request)
        try:
            async for piece in pieces:
                yield piece
        except BackPressureError:
            raise _overloaded(request.model) from None
        finally:
            pieces.cancel()


class SpeechWorkersBackend:
    """The coordinator's view of the speech replicas: one call per chunk, spread by Serve's router."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def transcribe_samples(self, samples, offset: float, request: TranscriptionRequest) -> ChunkTranscript:
        try:
            return await self._handle.transcribe_samples.remote(samples, offset, request)
        except BackPressureError:
            raise _overloaded(request.model) from None


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
