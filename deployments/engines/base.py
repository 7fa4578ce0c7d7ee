"""The interfaces every engine implements: replicas hold an engine and call only these."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

import numpy as np

from serve_app.contract import ChunkTranscript, Embeddings, GenerationStep
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest
from serve_app.protocol.embeddings import EmbeddingRequest


class Engine(abc.ABC):
    """Lifecycle shared by all engines; the defaults suit an engine with nothing to watch or stop."""

    async def check_health(self) -> None:
        """Raise when the engine can no longer serve (Serve then replaces the replica)."""

    def shutdown(self) -> None:
        """Stop the engine's threads or processes (replica teardown, tests)."""


class TextEngine(Engine):
    # True when a step read late holds everything produced since the last read (no step is ever queued
    # behind another): the replica then reads once per stream interval instead of waking for every step.
    merges_steps_for_late_reader: bool = False

    @abc.abstractmethod
    def generate(self, request: ChatCompletionRequest | CompletionRequest) -> AsyncIterator[GenerationStep]:
        """Steps for a chat or (legacy) completion request, the last one with usage; closing the iterator
        cancels the request."""

    @abc.abstractmethod
    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """The prompt tokens `generate` would report for this request (its usage.prompt_tokens), generating
        nothing: the chat template, tool definitions and each image's expanded placeholders included."""


class SpeechEngine(Engine):
    @abc.abstractmethod
    def check_language(self, request: TranscriptionRequest) -> None:
        """Refuse a `language` (or translation) this model cannot do (a 400), before any audio is decoded."""

    @abc.abstractmethod
    async def detect_language(self, samples: np.ndarray) -> str | None:
        """ISO code of the language spoken in `samples` (16 kHz), or None when the model is unsure."""

    @abc.abstractmethod
    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript:
        """Segments of one 16 kHz chunk, times shifted by `offset` seconds."""


class EmbeddingEngine(Engine):
    @abc.abstractmethod
    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """One vector per input, in order; a 400 naming the input that does not fit the model's window."""
