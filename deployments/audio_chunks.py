"""Decode an upload window by window into 16 kHz mono chunks cut in silences, never holding the whole file.

Long audio is transcribed chunk by chunk on several replicas; cutting where nobody speaks keeps words whole.
Uploads are untrusted: FFmpeg opens them with the demuxer their bytes were recognised as (never by probing,
which can pick a network demuxer such as `sdp`), with no protocol allowed (no nested opens: playlists,
concat, references), a bounded probe, and a wall-clock deadline on probing and decoding.
"""

from __future__ import annotations

import io
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from serve_app.errors import InvalidRequest
from serve_app.protocol.audio import sniff_audio

SAMPLE_RATE = 16_000
SEARCH_SECONDS = 20.0  # a chunk ends in the longest pause this far past its target length
MIN_CHUNK_SECONDS = 60.0
_DECODE_ERROR = "The audio file could not be decoded; it may be corrupt or truncated."
# FFmpeg's demuxer for each container sniff_audio recognises.
DEMUXERS = {"wav": "wav", "mp3": "mp3", "mp4": "mp4", "webm": "matroska", "ogg": "ogg", "flac": "flac",
            "mpeg": "mpeg"}
_OPEN_OPTIONS = {"protocol_whitelist": "none", "probesize": str(5_000_000), "analyzeduration": str(10_000_000)}


class DecodeBudget:
    """Wall-clock seconds spent probing and decoding one upload, counted only while this work runs (not while
    the decoder waits for replicas to take its chunks); a 400 past the budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._since: float | None = None

    def resume(self) -> None:
        self._since = time.monotonic()

    def pause(self) -> None:
        if self._since is not None:
            self.spent += time.monotonic() - self._since
            self._since = None

    def check(self) -> None:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        if self.spent + running > self.seconds:
            raise InvalidRequest(f"The audio file took longer than {self.seconds:g} s to decode; it may be "
                                 "damaged or crafted.", param="file")


def open_audio(audio: bytes, kind: str | None = None):
    """The upload as a PyAV container, opened with the demuxer its bytes say and nothing else allowed."""
    demuxer = DEMUXERS[kind or sniff_audio(audio)]
    return av.open(io.BytesIO(audio), format=demuxer, metadata_errors="ignore",
                   options={**_OPEN_OPTIONS, "format_whitelist": demuxer})


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
    seconds: float  # what the packets hold (a demux walk: no decoding)
    header_seconds: float | None  # what the headers promise, when they state it (not a bitrate estimate)


def probe(audio: bytes, max_seconds: float, budget: DecodeBudget) -> Probe:
    """Length of the audio its packets hold, and the length its headers promise where they state one. Refuses
    audio over `max_seconds` before any of it is decoded or transcribed."""
    budget.resume()
    try:
        kind = sniff_audio(audio)
        with open_audio(audio, kind) as container:
            _require_audio(container)
            stream = container.streams.audio[0]
            header = _stated_seconds(container, stream, audio, kind)
            start, end = None, 0.0
            for i, packet in enumerate(container.demux(stream)):  # no decoding: a 4-hour file takes ~1 s
                if i % 256 == 0:
                    budget.check()
                if packet.pts is not None and packet.time_base:
                    at = float(packet.pts * packet.time_base)
                    start = at if start is None else min(start, at)
                    end = max(end, at + float((packet.duration or 0) * packet.time_base))
            # Measured from the first packet: captures and cut files start at any timestamp (a stream dump
            # at 5 h). Ogg and Matroska headers then state where the audio ends, MPEG-PS how long it lasts.
            start = min(start or 0.0, end)
            seconds = end - start
            if header is not None and header > start + 1:
                header -= start
            for length in (header or 0.0, seconds):
                if length > max_seconds:
                    raise _too_long(length, max_seconds)
            return Probe(seconds, header)
    except av.error.FFmpegError:
        raise InvalidRequest(_DECODE_ERROR, param="file") from None
    finally:
        budget.pause()


def _stated_seconds(container, stream, audio: bytes, kind: str) -> float | None:
    """Duration from the headers, unless FFmpeg could only estimate it from the bitrate (an mp3 without a
    Xing/Info/VBRI frame: a variable-bitrate file would look truncated)."""
    if kind in ("mp3", "mpeg") and not _has_vbr_header(audio):
        return None
    if kind == "wav":  # FFmpeg sizes a wav by the bytes present; its header states the real length
        return _wav_stated_seconds(audio)
    # The container's length is its longest stream's: a video longer than its sound track promises nothing
    if container.duration and all(s.type == "audio" for s in container.streams):
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _wav_stated_seconds(audio: bytes) -> float | None:
    """Length the RIFF header promises: the `data` chunk's size over the `fmt ` chunk's byte rate."""
    byte_rate, at = 0, 12
    while at + 8 <= len(audio):
        kind, size = audio[at:at + 4], int.from_bytes(audio[at + 4:at + 8], "little")
        if kind == b"fmt " and size >= 12:
            byte_rate = int.from_bytes(audio[at + 16:at + 20], "little")
        elif kind == b"data":
            streaming = size in (0, 0xFFFFFFFF)  # writers that did not know the length leave these
            return None if streaming or not byte_rate else size / byte_rate
        at += 8 + size + (size & 1)
    return None


def _has_vbr_header(audio: bytes) -> bool:
    start = 0
    if audio[:3] == b"ID3" and len(audio) >= 10:  # skip the ID3v2 tag (its size is syncsafe)
        start = 10 + ((audio[6] & 0x7F) << 21 | (audio[7] & 0x7F) << 14 | (audio[8] & 0x7F) << 7 | audio[9] & 0x7F)
    first_frame = audio[start:start + 256]
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _too_long(seconds: float, limit: float) -> InvalidRequest:
    return InvalidRequest(f"The audio is {seconds / 3600:.2f} hours long; the maximum is {limit / 3600:g} hours.",
                          param="file", code="audio_too_long")


def _require_audio(container) -> None:
    if not container.streams.audio:
        raise InvalidRequest("The file contains no audio stream.", param="file")


def planned_chunk_seconds(total_seconds: float, target_seconds: float, replicas: int) -> float:
    """The chunk length for one file: as few chunks as `target_seconds` allows (each chunk decodes from a fresh
    context, which costs time and accuracy), of even length, and a multiple of the replicas that can take them,
    so the last round over them is full. A 12-minute file with a 300-s target on 2 replicas: 4 chunks of 180 s
    in 2 full rounds, not 300 + 300 + 120 in 2 rounds of which the second leaves a replica idle."""
    count = max(1, math.ceil(total_seconds / (target_seconds + SEARCH_SECONDS)))
    if count > 1 and replicas > 1:
        count = math.ceil(count / replicas) * replicas
    count = min(count, max(1, int(total_seconds // MIN_CHUNK_SECONDS)))
    return target_seconds if count == 1 else total_seconds / count


def iter_chunks(audio: bytes, chunk_seconds: float, max_seconds: float, search_seconds: float = SEARCH_SECONDS,
                budget: DecodeBudget | None = None) -> Iterator[AudioChunk]:
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
    budget = budget or DecodeBudget(float("inf"))
    for block in _decoded_blocks(audio, budget):
        pieces.append(block)
        buffered += len(block)
        decoded += len(block)
        if decoded > max_samples:  # the probe counted packets; decoded samples are the final word
            raise _too_long(decoded / SAMPLE_RATE, max_seconds)
        while buffered >= target + search:
            window = np.concatenate(pieces)
            cut = _silence_cut(window, target, search)
            budget.pause()  # the consumer's time (waiting for replicas) is not decoding time
            yield AudioChunk(index, offset / SAMPLE_RATE, window[:cut])
            budget.resume()
            pieces, buffered = [window[cut:]], len(window) - cut
            offset += cut
            index += 1
    if buffered:
        yield AudioChunk(index, offset / SAMPLE_RATE, np.concatenate(pieces))
    elif decoded == 0:
        raise InvalidRequest("The audio file contains no samples.", param="file")


def _decoded_blocks(audio: bytes, budget: DecodeBudget) -> Iterator[np.ndarray]:
    """float32 blocks of 16 kHz mono samples, about 30 s each."""
    fifo = av.AudioFifo()
    resampler, setup = None, None
    budget.resume()
    try:
        with open_audio(audio) as container:
            _require_audio(container)
            for frame in itertools.chain(_frames(container), [None]):
                budget.check()
                if frame is not None:
                    frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if frame_setup != setup:  # a stream may change rate or channels midway: flush, start anew
                        _drain(resampler, fifo)
                        resampler, setup = _resampler(), frame_setup
                    _write(resampler.resample(frame), fifo)
                else:
                    _drain(resampler, fifo)
                if fifo.samples >= 30 * SAMPLE_RATE or (frame is None and fifo.samples):
                    yield fifo.read().to_ndarray().reshape(-1).astype(np.float32) / 32768.0
    except av.error.FFmpegError:
        raise InvalidRequest(_DECODE_ERROR, param="file") from None
    finally:
        budget.pause()


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def _write(frames, fifo: av.AudioFifo) -> None:
    for out in frames:
        out.pts = None  # timestamps from damaged files can jump; only the sample order matters
        fifo.write(out)


def _drain(resampler: av.AudioResampler | None, fifo: av.AudioFifo) -> None:
    if resampler is not None:
        _write(resampler.resample(None), fifo)


def _frames(container):
    """Decoded frames of the first audio stream, packet by packet, then the decoder's flush. A damaged packet
    in the middle of a long recording is skipped, not the end of the file (an exception inside PyAV's own
    decode generator would close it)."""
    stream = container.streams.audio[0]
    for packet in container.demux(stream):  # the last packet (data None) flushes the decoder
        try:
            yield from packet.decode()
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
