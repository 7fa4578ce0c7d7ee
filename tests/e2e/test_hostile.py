"""The hostile-input corpus against both endpoints: each input gets its status and code, never a 5xx or a
hang, and the service still answers a small chat and a small transcription afterwards."""

from __future__ import annotations

import time

import pytest

from tests.support.errors import assert_error
from tests.support.hostile import audio_cases, audio_that_must_work, image_cases, url_cases
from tests.support.media import data_uri
from tests.support.models import CHAT_MODEL, SPEECH_MODEL, VISION_MODEL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


def chat_with_image(http, url: str):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return http.post("/v1/chat/completions", json={"model": VISION_MODEL, "max_tokens": 2,
                                                   "messages": [{"role": "user", "content": content}]})


def transcribe(http, data: bytes, name: str = "upload.mp3"):
    return http.post("/v1/audio/transcriptions", data={"model": SPEECH_MODEL}, files={"file": (name, data)})


@pytest.mark.parametrize("case", image_cases(), ids=lambda c: c.name)
def test_hostile_images(http, case):
    assert_error(chat_with_image(http, data_uri(case.payload)), case.status, case.code)


@pytest.mark.parametrize("case", url_cases(), ids=lambda c: c.name)
def test_hostile_image_urls(http, case):
    started = time.monotonic()
    assert_error(chat_with_image(http, case.payload), case.status, case.code)
    assert time.monotonic() - started < 5  # refused without connecting anywhere


def test_hostile_audio(http, workdir):
    for case in audio_cases(workdir):
        started = time.monotonic()
        r = transcribe(http, case.payload)
        assert r.status_code == case.status, (case.name, r.text)
        assert r.json()["error"]["code"] == case.code, case.name  # None: OpenAI's null code of a plain 400
        assert time.monotonic() - started < 10, case.name


def test_unusual_but_valid_audio_is_transcribed(http, workdir):
    for name, data in audio_that_must_work(workdir):
        r = transcribe(http, data)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["text"].strip(), name


@pytest.mark.parametrize("raw, param", [
    (b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800"}]}' % CHAT_MODEL.encode(),
     "messages[0].content"),
])
def test_lone_surrogates_are_400(http, raw, param):
    r = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, None, param)


def test_thousands_of_empty_messages_are_refused_before_templating(http):
    messages = [{"role": "user", "content": ""}] * 20_000
    r = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": messages, "max_tokens": 1})
    assert_error(r, 400, "context_length_exceeded", "messages")


def test_the_service_still_answers_after_the_corpus(http, speech_wav_file):
    r = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "max_tokens": 4,
                                                "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    r = transcribe(http, speech_wav_file.read_bytes(), "speech.wav")
    assert r.status_code == 200 and r.json()["text"], r.text
