"""Replica class for a speech-recognition model: transcribes chunks handed out by the coordinator."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import numpy as np

from deployments.engines.base import SpeechEngine
from deployments.engines.factory import create_speech_engine
from serve_app.config import ModelConfig
from serve_app.contract import ChunkTranscript
from serve_app.errors import APIError
from serve_app.protocol.audio import TranscriptionRequest

T = TypeVar("T")


# This many engine failures in a row (not the caller's errors) and the replica reports itself unhealthy, so
# Serve replaces it: a GPU fault fails every chunk after it, and Serve's router would keep sending it chunks.
FAILURES_BEFORE_UNHEALTHY = 3


class SpeechModelServer:
    def __init__(self, config: dict, *, engine: SpeechEngine | None = None) -> None:
        self.config = ModelConfig.model_validate(config)
        self.engine = engine if engine is not None else create_speech_engine(self.config)
        self._failures_in_a_row = 0

    async def detect_language(self, samples: np.ndarray) -> str | None:
        return await self._watched(self.engine.detect_language(samples))

    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript:
        return await self._watched(self.engine.transcribe_samples(samples, offset, request))

    async def _watched(self, work: Awaitable[T]) -> T:
        try:
            result = await work
        except APIError:  # the request's fault (a language the model lacks): the engine is fine
            raise
        except Exception:
            self._failures_in_a_row += 1
            raise
        self._failures_in_a_row = 0
        return result

    async def check_health(self) -> None:
        if self._failures_in_a_row >= FAILURES_BEFORE_UNHEALTHY:
            raise RuntimeError(f"the speech engine failed its last {self._failures_in_a_row} chunks")
        await self.engine.check_health()
