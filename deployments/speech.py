"""Replica class for a speech-recognition model."""

from __future__ import annotations

from deployments.engines.factory import create_speech_engine
from deployments.engines.protocol import Transcription
from serve_app.args import ModelConfig
from serve_app.protocol.audio import TranscriptionRequest


class SpeechModelServer:
    def __init__(self, config: dict) -> None:
        self.config = ModelConfig.model_validate(config)
        self.engine = create_speech_engine(self.config)

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        return await self.engine.transcribe(audio, request)

    async def check_health(self) -> None:
        await self.engine.check_health()
