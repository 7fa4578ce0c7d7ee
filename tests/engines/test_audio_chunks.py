"""Chunking decodes window by window and cuts in pauses, without losing or duplicating samples."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from deployments.audio_chunks import SAMPLE_RATE, DecodeBudget, iter_chunks, probe
from serve_app.errors import InvalidRequest, UnsupportedFileType
from tests.support.media import long_text, speech_wav


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory) -> bytes:
    wav = speech_wav(tmp_path_factory.mktemp("chunks") / "three.wav", long_text(450))
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-ac", "1", "-f", "mp3", "pipe:1"],
                          capture_output=True, check=True).stdout


def test_chunks_cover_the_file_in_order_and_end_in_pauses(three_minutes):
    chunks = list(iter_chunks(three_minutes, chunk_seconds=60, max_seconds=3600))
    assert len(chunks) >= 3
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for a, b in zip(chunks, chunks[1:]):
        assert b.offset == pytest.approx(a.offset + a.seconds)  # contiguous: nothing lost, nothing repeated
        assert 40 <= a.seconds <= 80
        tail = a.samples[-int(0.05 * SAMPLE_RATE):]
        assert np.abs(tail).max() < 0.05  # the cut lies in a pause, not inside a word
    total = sum(c.seconds for c in chunks)
    assert total == pytest.approx(probe(three_minutes, 3600, DecodeBudget(60)).seconds, abs=0.5)


def test_duration_cap_is_enforced_while_decoding(three_minutes):
    with pytest.raises(InvalidRequest, match="hours long; the maximum is") as err:
        list(iter_chunks(three_minutes, chunk_seconds=60, max_seconds=90))
    assert err.value.code == "audio_too_long"


def test_duration_cap_is_enforced_by_the_probe_before_decoding(three_minutes):
    with pytest.raises(InvalidRequest, match="hours long; the maximum is"):
        probe(three_minutes, 90, DecodeBudget(60))


def test_decoding_has_a_time_budget(three_minutes):
    with pytest.raises(InvalidRequest, match="took longer than"):
        list(iter_chunks(three_minutes, chunk_seconds=60, max_seconds=3600, budget=DecodeBudget(0.01)))


@pytest.mark.parametrize("data", [b"ID3" + bytes(500), b"RIFF\0\0\0\0WAVEfmt " + bytes(500), b"OggS" + bytes(500)])
def test_undecodable_bytes_are_400(data):
    with pytest.raises(InvalidRequest):
        list(iter_chunks(data, chunk_seconds=60, max_seconds=3600))


def test_bytes_in_no_supported_container_are_refused_before_ffmpeg_sees_them():
    with pytest.raises(UnsupportedFileType):
        list(iter_chunks(b"\x00" * 1000, chunk_seconds=60, max_seconds=3600))


# --- hostile and unusual audio -----------------------------------------------------------------------------

def ffmpeg_mp3(wav, *args: str) -> bytes:
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), *args, "-f", "mp3", "pipe:1"],
                          capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def sentence_wav(tmp_path_factory):
    return speech_wav(tmp_path_factory.mktemp("hostile") / "sentence.wav", long_text(30))


def decoded_seconds(data: bytes) -> float:
    return sum(c.seconds for c in iter_chunks(data, chunk_seconds=60, max_seconds=3600))


def test_ogg_magic_followed_by_sdp_never_reaches_a_network_demuxer():
    sdp = (b"OggS\nv=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
           b"m=audio 5004 RTP/AVP 0\n")
    started = time.monotonic()
    with pytest.raises(InvalidRequest):
        probe(sdp, 3600, DecodeBudget(60))
    assert time.monotonic() - started < 1  # FFmpeg's sdp demuxer would wait ~20 s on the network


def test_a_stream_that_changes_rate_and_channels_midway_is_decoded_whole(sentence_wav):
    first = ffmpeg_mp3(sentence_wav, "-ar", "44100", "-ac", "2")
    second = ffmpeg_mp3(sentence_wav, "-ar", "8000", "-ac", "1")
    one = decoded_seconds(first)
    assert decoded_seconds(first + second) == pytest.approx(2 * one, abs=0.5)


def test_variable_bitrate_mp3_without_a_xing_frame_is_not_called_truncated(sentence_wav):
    vbr = ffmpeg_mp3(sentence_wav, "-q:a", "6", "-write_xing", "0")
    stated = probe(vbr, 3600, DecodeBudget(60))
    assert stated.header_seconds is None  # FFmpeg's figure would be a bitrate estimate
    assert decoded_seconds(vbr) == pytest.approx(stated.seconds, abs=0.2)


def test_a_damaged_packet_midway_does_not_end_decoding(sentence_wav):
    data = bytearray(ffmpeg_mp3(sentence_wav, "-b:a", "64k"))
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)  # a few frames of zeros
    whole = decoded_seconds(ffmpeg_mp3(sentence_wav, "-b:a", "64k"))
    assert decoded_seconds(bytes(data)) > 0.8 * whole


@pytest.mark.parametrize("total, target, replicas, chunks", [
    (606, 300, 1, 2),  # the slack a cut may take (20 s) keeps a 10.1-minute file in 2 chunks, as before
    (606, 300, 2, 2),
    (720, 300, 1, 3),  # 3 even chunks of 240 s, not 300 + 300 + 120
    (720, 300, 2, 4),  # 2 full rounds of 180 s over 2 replicas
    (606, 120, 2, 6),
    (14400, 300, 8, 48),
    (130, 60, 4, 2),  # never under a minute a chunk
])
def test_chunk_plans_are_even_and_fill_every_round_over_the_replicas(total, target, replicas, chunks):
    from deployments.audio_chunks import planned_chunk_seconds

    assert planned_chunk_seconds(total, target, replicas) == pytest.approx(total / chunks)


def test_a_file_shorter_than_one_chunk_is_not_split_for_more_replicas():
    from deployments.audio_chunks import planned_chunk_seconds

    assert planned_chunk_seconds(200, 300, 4) == 300


def test_a_planned_length_cuts_the_file_into_that_many_chunks(three_minutes):
    from deployments.audio_chunks import planned_chunk_seconds

    seconds = probe(three_minutes, 3600, DecodeBudget(60)).seconds  # 165 s
    assert len(list(iter_chunks(three_minutes, 60, max_seconds=3600))) == 3  # cut at the target: a short tail
    chunks = list(iter_chunks(three_minutes, planned_chunk_seconds(seconds, 60, 2), max_seconds=3600))
    assert len(chunks) == 2 and min(c.seconds for c in chunks) > 60  # one round over 2 replicas, no tail


@pytest.mark.parametrize("options, replicas", [
    ({"num_replicas": 3}, 3),
    ({"autoscaling_config": {"min_replicas": 1, "max_replicas": 4}}, 4),
    ({}, 1),
])
def test_the_coordinator_plans_for_the_replicas_its_workers_can_reach(options, replicas):
    from deployments.speech_coordinator import most_replicas
    from serve_app.config import DeploymentOptions

    assert most_replicas(DeploymentOptions(**options)) == replicas
