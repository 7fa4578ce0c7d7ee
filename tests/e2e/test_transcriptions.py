"""Speech recognition through the OpenAI SDK on speech synthesized by espeak-ng."""

from __future__ import annotations

import pytest

from tests.support.media import SENTENCE, word_error_rate
from tests.support.models import SPEECH_MODEL

pytestmark = pytest.mark.e2e


def test_transcribes_mp3_with_low_word_error_rate(client, speech_mp3_file):
    with open(speech_mp3_file, "rb") as f:
        t = client.audio.transcriptions.create(model=SPEECH_MODEL, file=f)
    assert word_error_rate(SENTENCE, t.text) <= 0.3, t.text


def test_text_and_verbose_formats(client, speech_wav_file):
    text = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_wav_file.open("rb"),
                                              response_format="text")
    assert isinstance(text, str) and word_error_rate(SENTENCE, text) <= 0.3
    v = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_wav_file.open("rb"),
                                           response_format="verbose_json")
    assert v.language == "english" and 3 < v.duration < 15
    assert v.segments and v.segments[0].id == 0 and v.segments[0].end > v.segments[0].start


def test_srt_and_vtt_have_cues(client, speech_wav_file):
    srt = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_wav_file.open("rb"),
                                             response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt
    vtt = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_wav_file.open("rb"),
                                             response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:")
