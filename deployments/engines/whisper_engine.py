"""faster-whisper speech engine: decodes uploaded bytes and returns typed segments."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

import av
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio
from faster_whisper.tokenizer import _LANGUAGE_CODES
from pydantic import BaseModel, ConfigDict, Field

from deployments.engines.protocol import Segment, Transcription, Word
from serve_app.errors import InvalidRequest
from serve_app.protocol.audio import TranscriptionRequest

log = logging.getLogger(__name__)
SAMPLE_RATE = 16_000
# OpenAI's temperature 0 means "let the decoder fall back to higher temperatures when it is unsure".
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class WhisperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field("cpu", description="cpu or cuda")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, float16, int8_float16, ...")
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads (0: its default)")
    num_workers: int = Field(1, ge=1, description="Transcriptions this replica runs in parallel.")
    beam_size: int = Field(5, ge=1)
    vad_filter: bool = Field(True, description="Skip silence (without it silence turns into invented words).")
    max_audio_seconds: float = Field(4 * 3600, gt=0, description="Longest audio accepted (the guide: 4 hours).")


class WhisperEngine:
    def __init__(self, model_path: str, options: dict) -> None:
        self.options = WhisperOptions.model_validate(options)
        self.model = WhisperModel(
            model_path,
            device=self.options.device,
            compute_type=self.options.compute_type,
            cpu_threads=self.options.cpu_threads,
            num_workers=self.options.num_workers,
        )
        self._slots = asyncio.Semaphore(self.options.num_workers)

    async def check_health(self) -> None:
        return None

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        self._check_language(request)
        async with self._slots:
            cancelled = threading.Event()
            work = asyncio.ensure_future(asyncio.to_thread(self._transcribe, audio, request, cancelled))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The caller went away: stop the thread and keep this slot until it has stopped.
                cancelled.set()
                await asyncio.gather(work, return_exceptions=True)
                raise

    def _check_language(self, request: TranscriptionRequest) -> None:
        if request.language is None:
            return
        if request.language not in _LANGUAGE_CODES:
            raise InvalidRequest(f"Unknown language code `{request.language}` (use ISO-639-1, e.g. `en`).",
                                 param="language")
        if request.language != "en" and not self.model.model.is_multilingual:
            raise InvalidRequest(
                f"Model `{request.model}` only transcribes English; language `{request.language}` is not supported.",
                param="language",
            )

    def _transcribe(self, audio: bytes, request: TranscriptionRequest, cancelled: threading.Event) -> Transcription:
        self._check_duration(probe_seconds(audio))
        samples = _decode(audio)
        self._check_duration(len(samples) / SAMPLE_RATE)  # headers can understate the length
        temperature = FALLBACK_TEMPERATURES if request.temperature == 0 else request.temperature
        segments, info = self.model.transcribe(
            samples,
            language=request.language or ("en" if not self.model.model.is_multilingual else None),
            initial_prompt=request.prompt,
            temperature=temperature,
            beam_size=self.options.beam_size,
            vad_filter=self.options.vad_filter,
            word_timestamps=request.wants_words(),
        )
        out = []
        for i, s in enumerate(segments):  # lazy: each step decodes the next window
            if cancelled.is_set():
                raise asyncio.CancelledError()
            out.append(_segment(i, s))
        return Transcription(
            text=" ".join(s.text.strip() for s in out if s.text.strip()),
            language=_language_name(info.language),
            duration=round(len(samples) / SAMPLE_RATE, 3),
            segments=out,
        )


    def _check_duration(self, seconds: float) -> None:
        limit = self.options.max_audio_seconds
        if seconds > limit:
            raise InvalidRequest(f"The audio is {seconds / 3600:.2f} hours long; the maximum is {limit / 3600:g} hours.",
                                 param="file", code="audio_too_long")


def probe_seconds(audio: bytes) -> float:
    """Duration from the container, its audio stream, or (streamed webm has neither) a demux-only walk."""
    try:
        with av.open(io.BytesIO(audio), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest("The file contains no audio stream.", param="file")
            if container.duration:
                return container.duration / av.time_base
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            return end
    except av.error.FFmpegError:
        raise InvalidRequest("The audio file could not be decoded; it may be corrupt or truncated.",
                             param="file") from None


def _decode(audio: bytes):
    try:
        samples = decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
    except IndexError:  # PyAV opened the container but found no audio stream
        raise InvalidRequest("The file contains no audio stream.", param="file") from None
    except Exception as exc:  # av.error.FFmpegError and friends: corrupt or truncated data
        log.info("audio decode failed: %s", exc)
        raise InvalidRequest("The audio file could not be decoded; it may be corrupt or truncated.",
                             param="file") from None
    if samples.size == 0:
        raise InvalidRequest("The audio file contains no samples.", param="file")
    return samples


def _segment(index: int, s) -> Segment:
    words = None
    if s.words is not None:
        words = [Word(round(w.start, 3), round(w.end, 3), w.word, round(w.probability, 4)) for w in s.words]
    return Segment(
        id=index,  # faster-whisper counts from 1, OpenAI from 0
        start=round(s.start, 3),
        end=round(s.end, 3),
        text=s.text,
        tokens=list(s.tokens),
        temperature=s.temperature,
        avg_logprob=s.avg_logprob,
        compression_ratio=s.compression_ratio,
        no_speech_prob=s.no_speech_prob,
        words=words,
    )


_LANGUAGE_NAMES = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian",
                   "pt": "portuguese", "nl": "dutch", "ja": "japanese", "zh": "chinese", "ru": "russian"}


def _language_name(code: str) -> str:
    # OpenAI's verbose_json reports the language by name.
    return _LANGUAGE_NAMES.get(code, code)
