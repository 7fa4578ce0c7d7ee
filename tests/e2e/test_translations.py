"""Multilingual speech through the OpenAI SDK: French speech (espeak-ng) on whisper-base is detected as French,
transcribed in French, translated into English; English-only models refuse translations."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.errors import assert_error
from tests.support.models import MULTILINGUAL_SPEECH_MODEL, SPEECH_MODEL

pytestmark = pytest.mark.e2e


def test_language_is_detected_when_omitted_and_reported(client, french_speech_file):
    v = client.audio.transcriptions.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"),
                                           response_format="verbose_json")
    assert v.language == "french"
    assert "capitale" in v.text.lower() and "france" in v.text.lower(), v.text


def test_a_given_language_is_honoured(client, french_speech_file):
    v = client.audio.transcriptions.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"),
                                           response_format="verbose_json", language="en")
    assert v.language == "english"  # told English: Whisper writes what it hears in English words


def test_translation_is_english(client, french_speech_file):
    t = client.audio.translations.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"))
    words = set(t.text.lower().replace(",", " ").replace(".", " ").split())
    assert "capital" in words and "the" in words, t.text
    assert not words & {"est", "capitale", "ville", "célèbre"}, t.text


def test_translation_formats(client, french_speech_file):
    text = client.audio.translations.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"),
                                            response_format="text")
    assert "capital" in text.lower()
    srt = client.audio.translations.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"),
                                           response_format="srt")
    assert srt.startswith("1\n00:00:") and "capital" in srt.lower()
    v = client.audio.translations.create(model=MULTILINGUAL_SPEECH_MODEL, file=french_speech_file.open("rb"),
                                         response_format="verbose_json")
    # OpenAI's TranslationVerbose: the output's language, always English
    assert (v.task, v.language) == ("translate", "english") and v.segments and 3 < v.duration < 20


def test_translation_streams_text_deltas_then_the_whole_text(http, french_speech_file):
    with http.stream("POST", "/v1/audio/translations", data={"model": MULTILINGUAL_SPEECH_MODEL, "stream": "true"},
                     files={"file": ("french.mp3", french_speech_file.read_bytes())}) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "transcript.text.done"
    deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta")
    assert deltas == events[-1]["text"] and "capital" in deltas.lower()


def test_english_only_models_refuse_translations(client, french_speech_file):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.translations.create(model=SPEECH_MODEL, file=french_speech_file.open("rb"))
    assert info.value.param == "model" and info.value.code == "model_not_supported"


@pytest.mark.parametrize("field, value", [("language", "fr"), ("timestamp_granularities[]", "word"),
                                          ("task", "transcribe")])
def test_translation_form_fields_openai_does_not_take_are_refused(http, speech_wav_file, field, value):
    r = http.post("/v1/audio/translations", data={"model": MULTILINGUAL_SPEECH_MODEL, field: value},
                  files={"file": ("a.wav", speech_wav_file.read_bytes())})
    assert_error(r, 400, None, field.removesuffix("[]"), "unrecognized")


def test_transcriptions_refuse_a_task_field(http, speech_wav_file):
    r = http.post("/v1/audio/transcriptions", data={"model": MULTILINGUAL_SPEECH_MODEL, "task": "translate"},
                  files={"file": ("a.wav", speech_wav_file.read_bytes())})
    assert_error(r, 400, None, "task", "unrecognized")


def test_translations_keep_the_upload_checks(http):
    r = http.post("/v1/audio/translations", data={"model": MULTILINGUAL_SPEECH_MODEL},
                  files={"file": ("a.wav", b"not audio at all" * 10)})
    assert_error(r, 415, "unsupported_file_type", "file", "unsupported file type")


def test_models_list_says_which_speech_models_translate(client):
    cards = {m.id: m.model_extra for m in client.models.list().data}
    assert cards[MULTILINGUAL_SPEECH_MODEL]["capabilities"]["translation"] is True
    assert cards[SPEECH_MODEL]["capabilities"]["translation"] is False
