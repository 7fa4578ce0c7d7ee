"""A long file on a multilingual model: its language is detected once, from its start, and every chunk is
transcribed in that language (chunks detected apart could disagree)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.speech import SpeechModelServer
from deployments.speech_coordinator import SpeechCoordinator
from serve_app.config import ModelConfig
from serve_app.protocol.audio import TranscriptionRequest
from tests.support.media import FRENCH_SENTENCE, convert, speech_wav
from tests.support.models import MULTILINGUAL_SPEECH_MODEL, app_args


class RecordingSpeechServer(SpeechModelServer):
    """The real replica, noting which calls reach it."""

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self.detections = 0
        self.chunk_languages: list[str | None] = []

    async def detect_language(self, samples):
        self.detections += 1
        return await super().detect_language(samples)

    async def transcribe_samples(self, samples, offset, request):
        self.chunk_languages.append(request.language)
        return await super().transcribe_samples(samples, offset, request)


@pytest.fixture(scope="module")
def coordinator():
    config = next(m for m in app_args()["models"] if m["id"] == MULTILINGUAL_SPEECH_MODEL)
    # greedy decoding: the test is about which language each chunk is given, and beams cost 3x the time
    config = ModelConfig.model_validate({**config, "splitting": {"chunk_seconds": 60},
                                         "engine_options": {**config["engine_options"], "beam_size": 1}}).model_dump()
    return SpeechCoordinator(config, RecordingSpeechServer(config))


@pytest.fixture(scope="module")
def french_minute_and_a_half(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("french")
    wav = speech_wav(folder / "long.wav", " ".join([FRENCH_SENTENCE] * 12), voice="fr")
    return convert(wav, folder / "long.mp3", "-ac", "1", "-b:a", "32k").read_bytes()


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module: the engine's slots belong to the loop that first waited on them."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def transcribe(loop, coordinator, audio: bytes, **fields):
    request = TranscriptionRequest(model=MULTILINGUAL_SPEECH_MODEL, **fields)
    return loop.run_until_complete(coordinator.transcribe(audio, request))


def test_a_long_file_is_detected_once_and_every_chunk_uses_that_language(loop, coordinator,
                                                                          french_minute_and_a_half):
    workers = coordinator.workers
    result = transcribe(loop, coordinator, french_minute_and_a_half)
    assert workers.detections == 1
    assert len(workers.chunk_languages) >= 2 and set(workers.chunk_languages) == {"fr"}
    assert result.language == "french" and "capitale" in result.text.lower()


def test_silence_is_not_pinned_to_a_language(loop, coordinator):
    """A file that opens with a minute of silence: no language is forced on its chunks (each detects its own)."""
    silence = np.zeros(60 * 16_000, dtype=np.float32)
    assert loop.run_until_complete(coordinator.workers.detect_language(silence)) is None
