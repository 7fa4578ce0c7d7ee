"""Chunking decodes window by window and cuts in pauses, without losing or duplicating samples."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from deployments.audio_chunks import SAMPLE_RATE, iter_chunks, probe
from serve_app.errors import InvalidRequest
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
    assert total == pytest.approx(probe(three_minutes).seconds, abs=0.5)


def test_duration_cap_is_enforced_while_decoding(three_minutes):
    with pytest.raises(InvalidRequest, match="longer than the maximum"):
        list(iter_chunks(three_minutes, chunk_seconds=60, max_seconds=90))


@pytest.mark.parametrize("data", [b"\x00" * 1000, b"ID3" + bytes(500)])
def test_undecodable_bytes_are_400(data):
    with pytest.raises(InvalidRequest):
        list(iter_chunks(data, chunk_seconds=60, max_seconds=3600))
