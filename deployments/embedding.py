"""Replica class for an embedding model: owns one engine, returns one vector per input."""

from __future__ import annotations

from deployments.engines.base import EmbeddingEngine
from deployments.engines.factory import create_embedding_engine
from deployments.model_replica import ModelReplica
from serve_app.config import ModelConfig
from serve_app.contract import Embeddings
from serve_app.protocol.embeddings import EmbeddingRequest


class EmbeddingModelServer(ModelReplica):
    def __init__(self, config: dict, *, engine: EmbeddingEngine | None = None) -> None:
        """`engine` injects a ready engine (tests); otherwise the config's engine is built here."""
        super().__init__()
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_embedding_engine(self.config)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        with self._counted():
            return await self.engine.embed(request)
