"""Replica class for a text or multimodal model: owns one engine, streams typed steps or returns a whole
completion."""

from __future__ import annotations

from collections.abc import AsyncIterator

from deployments.engines.base import TextEngine
from deployments.engines.factory import create_text_engine
from deployments.step_pacing import paced
from serve_app.config import ModelConfig
from serve_app.contract import Completion, GenerationStep, collect
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest


class TextModelServer:
    def __init__(self, config: dict, *, engine: TextEngine | None = None) -> None:
        """`engine` injects a ready engine (tests); otherwise the config's engine is built here."""
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_text_engine(self.config)
        self._running = 0
        self._interval_s = self.config.stream_interval_ms / 1000

    async def stream(self, request: ChatCompletionRequest | CompletionRequest) -> AsyncIterator[GenerationStep]:
        self._running += 1
        try:
            async for step in paced(self.engine.generate(request), self._interval_s):
                yield step
        finally:
            self._running -= 1

    async def complete(self, request: ChatCompletionRequest | CompletionRequest) -> Completion:
        self._running += 1
        try:
            return await collect(self.engine.generate(request), request.n)
        finally:
            self._running -= 1

    async def pending(self) -> int:
        """Requests this replica is answering or holding: the batch runner sends work only while it is low."""
        return self._running

    async def ready(self) -> None:
        """Answered once this replica is up: the gateway's wake-up call for a model scaled to zero."""

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        """Let the engine stop its threads or processes."""
        if hasattr(self, "engine"):  # absent when the engine failed to start
            self.engine.shutdown()

    def __del__(self) -> None:
        self.shutdown()  # Serve calls this when the replica is torn down
