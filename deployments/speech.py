"""Replica class for a speech-recognition model: transcribes chunks handed out by the coordinator."""

from __future__ import annotations

import numpy as np

from deployments.engines.base import SpeechEngine
from deployments.engines.factory import create_speech_engine
from serve_app.config import ModelConfig
from serve_app.contract import ChunkTranscript
from serve_app.protocol.audio import TranscriptionRequest


class SpeechModelServer:
    def __init__(self, config: dict, *, engine: SpeechEngine | None = None) -> None:
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_speech_engine(self.config)

    async def detect_language(self, samples: np.ndarray) -> str | None:
        return await self.engine.detect_language(samples)

    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript:
        return await self.engine.transcribe_samples(samples, offset, request)

    async def check_health(self) -> None:
        await self.engine.check_health()
