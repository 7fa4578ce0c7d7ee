"""faster-whisper speech engine: transcribes 16 kHz samples (one chunk of a file) into typed segments."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.vad import collect_chunks, get_speech_timestamps
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from deployments.audio_chunks import SAMPLE_RATE
from deployments.engines.base import SpeechEngine
from deployments.engines.compute_priority import lower_this_thread
from deployments.engines.options import WhisperOptions
from deployments.speech_languages import check_language
from serve_app.contract import ChunkTranscript, Segment, Word
from serve_app.protocol.audio import TranscriptionRequest

# OpenAI's temperature 0 means "let the decoder fall back to higher temperatures when it is unsure".
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# A long file's language is detected once, from up to 3 windows of 30 s of speech at its start (as one pass
# over the file would), and kept only when the model is fairly sure of it.
DETECTION_SEGMENTS = 3
DETECTION_MIN_PROBABILITY = 0.5


class _Cancelled(Exception):
    pass


class WhisperEngine(SpeechEngine):
    def __init__(self, model_path: str, options: WhisperOptions, multilingual: bool = False) -> None:
        """`multilingual`: what the config promises (translation is offered); checked against the model."""
        self.options = options
        # CTranslate2 starts its worker threads with the model and they inherit their creator's nice value: build it
        # from a thread that lowered itself, so transcription runs below the request path (compute_priority.py).
        with ThreadPoolExecutor(1, initializer=lower_this_thread, initargs=(options.compute_nice,)) as builder:
            self.model = builder.submit(
                WhisperModel,
                model_path,
                device=self.options.device,
                compute_type=self.options.compute_type,
                cpu_threads=self.options.cpu_threads,
                num_workers=self.options.num_workers,
            ).result()
        self.multilingual = self.model.model.is_multilingual
        if multilingual and not self.multilingual:
            raise ValueError(f"{model_path} is an English-only Whisper model; remove `multilingual: true`")
        self._slots = asyncio.Semaphore(self.options.num_workers)

    def check_language(self, request: TranscriptionRequest) -> None:
        check_language(request, self.multilingual)

    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript:
        """Segments of one chunk, with times already shifted by `offset` seconds."""
        self.check_language(request)
        async with self._slots:
            cancelled = threading.Event()
            work = asyncio.ensure_future(asyncio.to_thread(self._transcribe, samples, offset, request, cancelled))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The caller went away: stop the thread and keep this slot until it has stopped.
                cancelled.set()
                await asyncio.gather(work, return_exceptions=True)
                raise

    async def detect_language(self, samples: np.ndarray) -> str | None:
        """The language spoken in a file's first chunk (ISO code), from up to DETECTION_SEGMENTS windows of its
        speech (silence is skipped first); None when unsure, so each chunk then detects its own."""
        if not self.multilingual:
            return "en"
        async with self._slots:
            work = asyncio.ensure_future(asyncio.to_thread(self._detect, samples))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:  # keep the slot until the thread is done, as transcription does
                await asyncio.gather(work, return_exceptions=True)
                raise

    def _detect(self, samples: np.ndarray) -> str | None:
        speech = get_speech_timestamps(samples)
        if not speech:  # silence or noise: Whisper would still name a language
            return None
        # the speech found above, so detect_language need not run the VAD over the chunk again
        pieces, _ = collect_chunks(samples, speech)
        language, probability, _ = self.model.detect_language(
            np.concatenate(pieces), language_detection_segments=DETECTION_SEGMENTS)
        return language if probability >= DETECTION_MIN_PROBABILITY else None

    def _transcribe(self, samples: np.ndarray, offset: float, request: TranscriptionRequest,
                    cancelled: threading.Event) -> ChunkTranscript:
        temperature = FALLBACK_TEMPERATURES if request.temperature == 0 else request.temperature
        segments, info = self.model.transcribe(
            samples,
            language=request.language or (None if self.multilingual else "en"),
            task=request.task,
            initial_prompt=request.prompt,
            temperature=temperature,
            beam_size=self.options.beam_size,
            vad_filter=self.options.vad_filter,
            word_timestamps=request.wants_words(),
        )
        out = []
        end = offset + len(samples) / SAMPLE_RATE
        for s in segments:  # lazy: each step decodes the next 30 s window
            if cancelled.is_set():
                raise _Cancelled()
            out.append(_segment(s, offset, end))
        # OpenAI's verbose_json names the language spoken (a translation too), in English words
        return ChunkTranscript(out, LANGUAGES.get(info.language, info.language), len(samples) / SAMPLE_RATE)


def _segment(s, offset: float, chunk_end: float) -> Segment:
    # Whisper can place a last timestamp past the end of the audio it was given; a chunk's segments must
    # not overlap the next chunk's, so times are clamped to the chunk.
    def at(t: float) -> float:
        return round(min(t + offset, chunk_end), 3)

    words = None
    if s.words is not None:
        words = [Word(at(w.start), at(w.end), w.word, round(w.probability, 4)) for w in s.words]
    return Segment(
        id=0,  # numbered by the coordinator once chunks are stitched (OpenAI counts from 0)
        start=at(s.start),
        end=at(s.end),
        text=s.text,
        tokens=list(s.tokens),
        temperature=s.temperature,
        avg_logprob=s.avg_logprob,
        compression_ratio=s.compression_ratio,
        no_speech_prob=s.no_speech_prob,
        words=words,
    )
