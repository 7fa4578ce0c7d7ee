"""The long-audio coordinator with stand-in workers: what it refuses before any transcription, how it
measures files, and what it stops when a request fails or its client leaves."""

from __future__ import annotations

import asyncio
import io
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from deployments import speech_coordinator
from deployments.audio_chunks import DecodeBudget, probe
from deployments.speech_coordinator import SpeechCoordinator, SpeechWorkersHandle
from serve_app.config import ModelConfig
from serve_app.contract import ChunkTranscript
from serve_app.errors import InvalidRequest
from serve_app.protocol.audio import TranscriptionRequest
from tests.support.models import SPEECH_MODEL, app_args


class CountingWorkers:
    def __init__(self) -> None:
        self.chunks = 0

    async def detect_language(self, samples):
        return None

    async def transcribe_samples(self, samples, offset, request):
        self.chunks += 1
        return ChunkTranscript([], "english", len(samples) / 16000)


def coordinator(workers) -> SpeechCoordinator:
    config = next(m for m in app_args()["models"] if m["id"] == SPEECH_MODEL)
    return SpeechCoordinator(ModelConfig.model_validate(config).model_dump(), workers)


def tone(fmt: str, codec: str, seconds: float, rate: int = 16000, start_s: float = 0.0,
         video_seconds: int = 0) -> bytes:
    """`seconds` of a sine in `fmt`, its timestamps from `start_s`; with `video_seconds` of video beside it."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        video = out.add_stream("mpeg4", rate=1) if video_seconds else None
        audio = out.add_stream(codec, rate=rate)
        audio.layout = "mono"
        if video is not None:
            video.width = video.height = 16
            video.pix_fmt = "yuv420p"
            for i in range(video_seconds):
                frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 1)
                for packet in video.encode(frame):
                    out.mux(packet)
            for packet in video.encode(None):
                out.mux(packet)
        step, done, first = 960, 0, int(start_s * rate)
        while done < seconds * rate:
            wave = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(step) + done) / rate) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, first + done, Fraction(1, rate)
            for packet in audio.encode(frame):
                out.mux(packet)
            done += step
        for packet in audio.encode(None):
            out.mux(packet)
    return buf.getvalue()


def test_a_truncated_file_is_refused_before_any_chunk_is_transcribed():
    whole = tone("flac", "flac", 120)
    workers = CountingWorkers()
    request = TranscriptionRequest(model=SPEECH_MODEL)
    with pytest.raises(InvalidRequest, match="truncated or corrupt"):
        asyncio.run(coordinator(workers).transcribe(whole[:len(whole) // 2], request))
    assert workers.chunks == 0
    assert asyncio.run(coordinator(workers).transcribe(whole, request)).duration == pytest.approx(120, abs=0.5)


def test_a_video_longer_than_its_sound_track_is_measured_by_the_sound():
    measured = probe(tone("mp4", "aac", 20, video_seconds=60), 14400, DecodeBudget(60))
    assert measured.seconds == pytest.approx(20, abs=0.2) and measured.header_seconds == pytest.approx(20, abs=0.2)


@pytest.mark.parametrize(("fmt", "codec", "rate"), [("ogg", "libopus", 48000), ("matroska", "libopus", 48000),
                                                    ("mpeg", "mp2", 48000)])
def test_a_capture_whose_timestamps_start_at_five_hours_is_as_long_as_its_audio(fmt, codec, rate):
    measured = probe(tone(fmt, codec, 30, rate=rate, start_s=5 * 3600), 4 * 3600, DecodeBudget(60))
    assert measured.seconds == pytest.approx(30, abs=0.2)
    assert measured.header_seconds is None or measured.header_seconds == pytest.approx(30, abs=0.2)


def test_leaving_while_a_chunk_is_decoded_is_a_cancellation_and_closes_the_decoder(monkeypatch):
    closed = []

    def slow_chunks(*args, **kwargs):
        try:
            time.sleep(0.5)  # decoding, in the coordinator's thread
            yield from ()
        finally:
            closed.append(True)

    monkeypatch.setattr(speech_coordinator, "iter_chunks", slow_chunks)

    async def leave_midway():
        request = TranscriptionRequest(model=SPEECH_MODEL)
        stream = coordinator(CountingWorkers()).stream(tone("flac", "flac", 5), request)
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):  # not "ValueError: generator already executing"
            await task

    asyncio.run(leave_midway())
    assert closed == [True]


def test_a_chunk_call_given_up_is_cancelled_on_its_replica():
    class Call:
        cancelled = False

        def __await__(self):
            return asyncio.sleep(3600).__await__()

        def cancel(self):
            self.cancelled = True

    call = Call()

    class Handle:
        def __getattr__(self, method):
            return type("M", (), {"remote": staticmethod(lambda *args: call)})

    async def give_up():
        task = asyncio.ensure_future(SpeechWorkersHandle(Handle(), SPEECH_MODEL).transcribe_samples(None, 0.0, None))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    assert call.cancelled


def test_a_chunk_whose_replicas_are_gone_is_retried_once_then_a_503():
    from ray.serve.exceptions import ReplicaUnavailableError

    from serve_app.errors import ServiceUnavailable

    calls = []

    async def lost(*args):
        calls.append(args)
        raise ReplicaUnavailableError("gone")

    class Handle:
        def __getattr__(self, method):
            return type("M", (), {"remote": staticmethod(lambda *args: lost(*args))})

    with pytest.raises(ServiceUnavailable) as err:
        asyncio.run(SpeechWorkersHandle(Handle(), SPEECH_MODEL).transcribe_samples(None, 0.0, None))
    assert err.value.status_code == 503 and len(calls) == 2


def test_a_speech_replica_whose_engine_keeps_failing_reports_itself_unhealthy():
    from deployments.speech import FAILURES_BEFORE_UNHEALTHY, SpeechModelServer

    class Engine:
        broken = True

        async def transcribe_samples(self, samples, offset, request):
            if self.broken:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return ChunkTranscript([], "english", 1.0)

        async def detect_language(self, samples):
            raise InvalidRequest("this model knows one language")  # the caller's fault: the engine is fine

        async def check_health(self):
            return None

    config = next(m for m in app_args()["models"] if m["id"] == SPEECH_MODEL)
    server = SpeechModelServer(config, engine=Engine())

    async def chunks(count: int) -> None:
        for _ in range(count):
            with pytest.raises((RuntimeError, InvalidRequest)):
                await server.transcribe_samples(None, 0.0, None)
            with pytest.raises(InvalidRequest):
                await server.detect_language(None)

    asyncio.run(chunks(FAILURES_BEFORE_UNHEALTHY - 1))
    asyncio.run(server.check_health())  # a failure or two: still serving
    asyncio.run(chunks(1))
    with pytest.raises(RuntimeError, match="failed its last 3 chunks"):
        asyncio.run(server.check_health())
    server.engine.broken = False
    asyncio.run(server.transcribe_samples(None, 0.0, None))
    asyncio.run(server.check_health())


@pytest.mark.parametrize(("language", "param"), [("xx", "language"), ("fr", "language")])
def test_a_language_the_model_cannot_do_is_refused_before_the_upload_is_decoded(language, param):
    workers = CountingWorkers()  # whisper-tiny.en: English only
    with pytest.raises(InvalidRequest) as err:
        asyncio.run(coordinator(workers).transcribe(tone("flac", "flac", 5),
                                                    TranscriptionRequest(model=SPEECH_MODEL, language=language)))
    assert err.value.param == param and workers.chunks == 0
