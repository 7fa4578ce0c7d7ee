"""Replica class for a text model: owns one engine, streams typed steps or returns a whole completion."""

from __future__ import annotations

from typing import AsyncIterator

from deployments.engines.factory import create_text_engine
from deployments.engines.protocol import Completion, GenerationStep, collect
from serve_app.args import ModelConfig
from serve_app.protocol.chat import ChatCompletionRequest


class TextModelServer:
    def __init__(self, config: dict) -> None:
        self.config = ModelConfig.model_validate(config)
        self.engine = create_text_engine(self.config)

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[GenerationStep]:
        async for step in self.engine.generate(request):
            yield step

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        return await collect(self.engine.generate(request), request.n)

    async def ready(self) -> None:
        """Answered once this replica is up: the gateway's wake-up call for a model scaled to zero."""

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        """Let the engine stop its threads or processes."""
        engine_shutdown = getattr(getattr(self, "engine", None), "shutdown", None)
        if engine_shutdown is not None:
            engine_shutdown()

    def __del__(self) -> None:
        self.shutdown()  # Serve calls this when the replica is torn down
