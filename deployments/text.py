"""Replica class for a text or multimodal model: owns one engine, streams typed steps or returns a whole
completion."""

from __future__ import annotations

from collections.abc import AsyncIterator

from deployments.engines.base import TextEngine
from deployments.engines.factory import create_text_engine
from deployments.model_replica import ModelReplica
from deployments.step_pacing import paced, stream_interval
from serve_app.config import ModelConfig
from serve_app.contract import Completion, GenerationStep, collect
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest


class TextModelServer(ModelReplica):
    def __init__(self, config: dict, *, engine: TextEngine | None = None) -> None:
        """`engine` injects a ready engine (tests); otherwise the config's engine is built here."""
        super().__init__()
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_text_engine(self.config)
        self._interval_s = self.config.stream_interval_ms / 1000

    def _stream_interval(self) -> float:
        return stream_interval(self._interval_s, self._running, self.config.stream_items_per_s)

    async def stream(self, request: ChatCompletionRequest | CompletionRequest) -> AsyncIterator[GenerationStep]:
        with self._counted():
            async for step in paced(self.engine.generate(request), self._stream_interval,
                                    engine_merges=self.engine.merges_steps_for_late_reader):
                yield step

    async def complete(self, request: ChatCompletionRequest | CompletionRequest) -> Completion:
        with self._counted():
            return await collect(self.engine.generate(request), request.n)

    async def count_tokens(self, request: ChatCompletionRequest) -> int:
        """The prompt tokens the request would use (POST /v1/responses/input_tokens); nothing is generated."""
        return await self.engine.count_prompt_tokens(request)
