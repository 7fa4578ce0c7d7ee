"""Long-audio coordinator: decodes an upload chunk by chunk, fans the chunks out to the speech replicas
through their Serve handle (so autoscaling adds capacity), and stitches the answers back in order."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from deployments.audio_chunks import DecodeBudget, Probe, iter_chunks, planned_chunk_seconds, probe
from deployments.speech_languages import check_language
from serve_app.config import DeploymentOptions, ModelConfig
from serve_app.contract import ChunkTranscript, Transcription
from serve_app.errors import InvalidRequest, model_overloaded, model_unavailable
from serve_app.protocol.audio import TranscriptionRequest


class SpeechWorkers(Protocol):
    async def detect_language(self, samples: np.ndarray) -> str | None: ...

    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript: ...


# A worker replica that died mid-chunk, or none up: retried once, then a 503 (as the gateway's own calls).
REPLICA_LOST = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


class SpeechWorkersHandle:
    """The speech replicas behind their Serve handle: one call per chunk, spread by Serve's router."""

    def __init__(self, handle: DeploymentHandle, model: str) -> None:
        self._handle = handle
        self._model = model

    async def _call(self, method: str, *args: object):
        for attempt in (1, 2):  # a replica lost mid-chunk: once more, on another replica
            response = getattr(self._handle, method).remote(*args)
            try:
                return await response
            except asyncio.CancelledError:
                # The request failed or its client left: awaiting a response does not cancel the call, and
                # Serve cancels a replica's calls only when its own request is cancelled, not when it fails.
                response.cancel()
                raise
            except BackPressureError as exc:
                raise model_overloaded(self._model, exc.retry_after_s) from None
            except REPLICA_LOST:
                if attempt == 2:
                    raise model_unavailable(self._model) from None

    async def detect_language(self, samples: np.ndarray) -> str | None:
        return await self._call("detect_language", samples)

    async def transcribe_samples(self, samples: np.ndarray, offset: float,
                                 request: TranscriptionRequest) -> ChunkTranscript:
        return await self._call("transcribe_samples", samples, offset, request)


class SpeechCoordinator:
    def __init__(self, config: dict, workers: SpeechWorkers) -> None:
        self.config = ModelConfig.model_validate(config)
        self.splitting = self.config.splitting
        self.replicas = most_replicas(self.config.deployment)  # chunks are planned to fill rounds over them
        # Under Serve the workers arrive as a handle; in-process (tests) as the replica object itself.
        self.workers = (SpeechWorkersHandle(workers, self.config.id) if isinstance(workers, DeploymentHandle)
                        else workers)

    async def transcribe(self, audio: bytes, request: TranscriptionRequest) -> Transcription:
        return stitch([piece async for piece in self.stream(audio, request)])

    async def stream(self, audio: bytes, request: TranscriptionRequest) -> AsyncIterator[ChunkTranscript]:
        """Chunk transcripts in file order, each as soon as it and all before it are done."""
        check_language(request, self.config.multilingual)  # a 400 before the upload is probed or decoded
        limit = self.splitting.max_audio_seconds
        budget = DecodeBudget(self.splitting.max_decode_seconds)
        header = await asyncio.to_thread(probe, audio, limit, budget)  # over the cap: refused before any work
        _check_complete(header, header.seconds)  # cut short by its packets already: refused before any work
        chunk_seconds = planned_chunk_seconds(header.seconds, self.splitting.chunk_seconds, self.replicas)
        chunks = iter_chunks(audio, chunk_seconds, limit, budget=budget)
        pending: collections.deque[asyncio.Future] = collections.deque()
        decoded = 0.0
        decoding: asyncio.Future | None = None

        async def next_chunk():
            nonlocal decoding  # shielded: a cancellation must not leave the generator running in its thread
            decoding = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))  # off the event loop
            return await asyncio.shield(decoding)

        try:
            chunk = await next_chunk()
            long_file = chunk is not None and header.seconds > chunk.seconds + 1
            if long_file and request.language is None and self.config.multilingual:
                # One language for the whole file, from its start: chunks detected apart could disagree.
                language = await self.workers.detect_language(chunk.samples)
                if language is not None:  # unsure (silence, music): each chunk detects its own
                    request = request.model_copy(update={"language": language})
            while True:
                if chunk is None:
                    _check_complete(header, decoded)
                    break
                decoded += chunk.seconds
                pending.append(asyncio.ensure_future(
                    self.workers.transcribe_samples(chunk.samples, chunk.offset, request)))
                while pending and (len(pending) >= self.splitting.max_chunks_in_flight or pending[0].done()):
                    yield await _next_in_order(pending)
                chunk = await next_chunk()
            while pending:
                yield await _next_in_order(pending)
        finally:
            for future in pending:  # a failed chunk or a gone client: stop the others too
                future.cancel()
            if decoding is not None and not decoding.done():
                await asyncio.wait([decoding])  # the chunk being decoded (a fraction of a second), then close
            chunks.close()

    async def ready(self) -> None:
        """Answered once this replica is up: the gateway's wake-up call for a model scaled to zero."""

    async def check_health(self) -> None:
        return None


def most_replicas(options: DeploymentOptions) -> int:
    """The speech replicas a file's chunks can spread over: the fixed count, or what autoscaling may reach."""
    if isinstance(options.num_replicas, int):
        return options.num_replicas
    return int((options.autoscaling_config or {}).get("max_replicas", 1))


def _check_complete(header: Probe, decoded: float) -> None:
    # A file cut short (an interrupted upload or copy) still says its full length in its headers; a header
    # that only estimates (from the bitrate) says nothing either way.
    stated = header.header_seconds
    if stated is not None and decoded < 0.9 * stated - 1.0:
        raise InvalidRequest(
            f"The audio file is truncated or corrupt: its header says {stated:.1f} s but only "
            f"{decoded:.1f} s could be decoded.", param="file")


async def _next_in_order(pending: collections.deque[asyncio.Future]) -> ChunkTranscript:
    piece = await pending[0]  # stays in `pending` while awaited, so a cancellation can still reach it
    pending.popleft()
    return piece


def stitch(pieces: list[ChunkTranscript]) -> Transcription:
    segments = [s for piece in pieces for s in piece.segments]
    for i, segment in enumerate(segments):
        segment.id = i
    return Transcription(
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        language=pieces[0].language if pieces else "english",
        duration=round(sum(p.seconds for p in pieces), 3),
        segments=segments,
    )
