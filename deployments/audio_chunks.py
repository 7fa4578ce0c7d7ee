"""Decode an upload window by window into 16 kHz mono chunks cut in silences, never holding the whole file.

Long audio is transcribed chunk by chunk on several replicas; cutting where nobody speaks keeps words whole.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from serve_app.errors import InvalidRequest

SAMPLE_RATE = 16_000
_DECODE_ERROR = "The audio file could not be decoded; it may be corrupt or truncated."


@dataclass
class AudioChunk:
    index: int
    offset: float  # seconds from the start of the file
    samples: np.ndarray  # float32, 16 kHz mono

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass
class Probe:
    seconds: float
    from_header: bool  # False: measured by walking the packets (no duration in the headers)


def probe(audio: bytes) -> Probe:
    """Duration from the container, its audio stream, or (streamed webm has neither) a demux-only walk."""
    try:
        with av.open(io.BytesIO(audio), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest("The file contains no audio stream.", param="file")
            if container.duration:
                return Probe(container.duration / av.time_base, True)
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return Probe(float(stream.duration * stream.time_base), True)
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            return Probe(end, False)
    except av.error.FFmpegError:
        raise InvalidRequest(_DECODE_ERROR, param="file") from None


def iter_chunks(audio: bytes, chunk_seconds: float, max_seconds: float, search_seconds: float = 20.0,
                ) -> Iterator[AudioChunk]:
    """Yield consecutive chunks of about `chunk_seconds`, each ending in the longest pause found within
    `search_seconds` of its target end. Raises InvalidRequest for undecodable input or audio over `max_seconds`
    (checked while decoding too: headers can understate the length)."""
    target = int(chunk_seconds * SAMPLE_RATE)
    search = int(search_seconds * SAMPLE_RATE)
    max_samples = int(max_seconds * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    buffered = decoded = 0
    offset = 0
    index = 0
    for block in _decoded_blocks(audio):
        pieces.append(block)
        buffered += len(block)
        decoded += len(block)
        if decoded > max_samples:
            raise InvalidRequest(f"The audio is longer than the maximum of {max_seconds / 3600:g} hours.",
                                 param="file", code="audio_too_long")
        while buffered >= target + search:
            window = np.concatenate(pieces)
            cut = _silence_cut(window, target, search)
            yield AudioChunk(index, offset / SAMPLE_RATE, window[:cut])
            pieces, buffered = [window[cut:]], len(window) - cut
            offset += cut
            index += 1
    if buffered:
        yield AudioChunk(index, offset / SAMPLE_RATE, np.concatenate(pieces))
    elif decoded == 0:
        raise InvalidRequest("The audio file contains no samples.", param="file")


def _decoded_blocks(audio: bytes) -> Iterator[np.ndarray]:
    """float32 blocks of 16 kHz mono samples, about 30 s each."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    fifo = av.AudioFifo()
    try:
        with av.open(io.BytesIO(audio), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest("The file contains no audio stream.", param="file")
            for frame in itertools.chain(_valid_frames(container.decode(audio=0)), [None]):
                for out in resampler.resample(frame):
                    out.pts = None  # timestamps from damaged files can jump; only the sample order matters
                    fifo.write(out)
                if fifo.samples >= 30 * SAMPLE_RATE or (frame is None and fifo.samples):
                    yield fifo.read().to_ndarray().reshape(-1).astype(np.float32) / 32768.0
    except av.error.FFmpegError:
        raise InvalidRequest(_DECODE_ERROR, param="file") from None


def _valid_frames(frames):
    # A corrupt frame in the middle of a long recording should not discard the rest (as faster-whisper does).
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def _silence_cut(window: np.ndarray, target: int, search: int) -> int:
    """Index in [target - search, target + search] at the middle of the longest pause, else `target`."""
    start = max(0, target - search)
    region = window[start:target + search]
    speech = get_speech_timestamps(region, VadOptions(min_silence_duration_ms=200, speech_pad_ms=100))
    edges = [0] + [x for s in speech for x in (s["start"], s["end"])] + [len(region)]
    gaps = [(edges[i + 1] - edges[i], edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    length, gap_start, gap_end = max(gaps)
    if not speech or length == 0:
        return target
    return start + (gap_start + gap_end) // 2
