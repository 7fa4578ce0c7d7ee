"""Replica class for an embedding model: owns one engine, returns one vector per input."""

from __future__ import annotations

from deployments.engines.base import EmbeddingEngine
from deployments.engines.factory import create_embedding_engine
from serve_app.config import ModelConfig
from serve_app.contract import Embeddings
from serve_app.protocol.embeddings import EmbeddingRequest


class EmbeddingModelServer:
    def __init__(self, config: dict, *, engine: EmbeddingEngine | None = None) -> None:
        """`engine` injects a ready engine (tests); otherwise the config's engine is built here."""
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_embedding_engine(self.config)
        self._running = 0

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        self._running += 1
        try:
            return await self.engine.embed(request)
        finally:
            self._running -= 1

    async def pending(self) -> int:
        """Requests this replica is answering: the batch runner sends work only while it is low."""
        return self._running

    async def ready(self) -> None:
        """Answered once this replica is up: the gateway's wake-up call for a model scaled to zero."""

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        if hasattr(self, "engine"):  # absent when the engine failed to start
            self.engine.shutdown()

    def __del__(self) -> None:
        self.shutdown()  # Serve calls this when the replica is torn down
