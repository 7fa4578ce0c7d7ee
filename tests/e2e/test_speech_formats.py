"""Every audio format the guide lists (and ogg, flac), every response format, rejections by content."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.support.media import SENTENCE, convert, word_error_rate
from tests.support.models import SPEECH_MODEL

pytestmark = pytest.mark.e2e

# extension -> ffmpeg arguments producing that format from the synthesized wav
FORMATS = {
    "mp3": [], "mpga": ["-f", "mp3"], "mp4": ["-c:a", "aac"], "m4a": ["-c:a", "aac"], "wav": [],
    "webm": ["-c:a", "libopus"], "mpeg": ["-f", "mpeg"], "ogg": ["-c:a", "libvorbis"], "flac": [],
}
TIMESTAMP = r"(\d{2}):(\d{2}):(\d{2})[,.](\d{3})"



def transcribe(http, name: str, data: bytes, **fields) -> httpx.Response:
    return http.post("/v1/audio/transcriptions", data={"model": SPEECH_MODEL, **fields}, files={"file": (name, data)})


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_transcribes(http, speech_wav_file, tmp_path, ext):
    path = convert(speech_wav_file, tmp_path / f"speech.{ext}", *FORMATS[ext])
    r = transcribe(http, path.name, path.read_bytes())
    assert r.status_code == 200, r.text
    assert word_error_rate(SENTENCE, r.json()["text"]) <= 0.3, r.json()["text"]


def test_browser_recorded_webm_without_duration(http, speech_wav_file, tmp_path):
    """MediaRecorder writes webm as a live stream: no duration and no cues in the headers."""
    out = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(speech_wav_file), "-c:a", "libopus",
                          "-f", "webm", "-live", "1", "pipe:1"], capture_output=True, check=True).stdout
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", "-"],
                           input=out, capture_output=True).stdout.decode().strip()
    assert probe in ("", "N/A")  # really no duration in the file
    r = transcribe(http, "recording.webm", out, response_format="verbose_json")
    assert r.status_code == 200, r.text
    assert word_error_rate(SENTENCE, r.json()["text"]) <= 0.3 and r.json()["duration"] > 3


def cues(body: str) -> list[tuple[float, float]]:
    stamps = re.findall(TIMESTAMP + " --> " + TIMESTAMP, body)
    to_s = lambda h, m, s, ms: int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000  # noqa: E731
    return [(to_s(*c[:4]), to_s(*c[4:])) for c in stamps]


def assert_monotonic(spans: list[tuple[float, float]]) -> None:
    assert spans
    for (start, end), (next_start, _) in zip(spans, spans[1:] + [(float("inf"), 0)]):
        assert 0 <= start <= end <= next_start + 1e-3


def test_srt_and_vtt_are_well_formed(http, speech_mp3_file):
    srt = transcribe(http, "a.mp3", speech_mp3_file.read_bytes(), response_format="srt").text
    blocks = srt.strip().split("\n\n")
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(number) and re.fullmatch(TIMESTAMP.replace("[,.]", ",") + " --> " +
                                                        TIMESTAMP.replace("[,.]", ","), lines[1]) and lines[2]
    assert_monotonic(cues(srt))
    vtt = transcribe(http, "a.mp3", speech_mp3_file.read_bytes(), response_format="vtt").text
    assert vtt.startswith("WEBVTT\n\n") and "," not in "".join(re.findall(TIMESTAMP, vtt)[0])
    assert_monotonic(cues(vtt))


def test_verbose_json_fields_and_words(http, speech_mp3_file):
    r = transcribe(http, "a.mp3", speech_mp3_file.read_bytes(), response_format="verbose_json",
                   **{"timestamp_granularities[]": ["word", "segment"]})
    body = r.json()
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert isinstance(body["duration"], float) and body["usage"]["type"] == "duration"
    for i, s in enumerate(body["segments"]):
        assert s["id"] == i
        assert isinstance(s["tokens"], list) and all(isinstance(t, int) for t in s["tokens"])
        for key in ("start", "end", "avg_logprob", "compression_ratio", "no_speech_prob", "temperature"):
            assert isinstance(s[key], float), key
    assert_monotonic([(s["start"], s["end"]) for s in body["segments"]])
    words = body["words"]
    assert len(words) >= 10 and all(set(w) == {"word", "start", "end", "probability"} for w in words)
    for w in words:  # each word lies inside some segment
        assert any(s["start"] - 0.01 <= w["start"] <= w["end"] <= s["end"] + 0.01 for s in body["segments"])


def test_sdk_word_granularity(client, speech_mp3_file):
    t = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_mp3_file.open("rb"),
                                           response_format="verbose_json", timestamp_granularities=["word"])
    assert t.words and t.words[0].word.strip()


def test_stream_sends_deltas_then_done(http, speech_mp3_file):
    with http.stream("POST", "/v1/audio/transcriptions", data={"model": SPEECH_MODEL, "stream": "true"},
                     files={"file": ("a.mp3", speech_mp3_file.read_bytes())}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    done = events[-1]
    assert deltas and done["type"] == "transcript.text.done"
    assert "".join(d["delta"] for d in deltas) == done["text"]
    assert word_error_rate(SENTENCE, done["text"]) <= 0.3 and done["usage"]["seconds"] >= 3


def test_sdk_stream(client, speech_mp3_file):
    stream = client.audio.transcriptions.create(model=SPEECH_MODEL, file=speech_mp3_file.open("rb"), stream=True)
    events = list(stream)
    assert events[-1].type == "transcript.text.done" and word_error_rate(SENTENCE, events[-1].text) <= 0.3


@pytest.mark.parametrize("name, make, status", [
    ("image.mp3", lambda mp3: b"\x89PNG\r\n\x1a\n" + bytes(300), 415),
    ("notes.txt", lambda mp3: b"Meeting notes: buy milk.\n" * 20, 415),
    ("half.mp3", lambda mp3: mp3[: len(mp3) // 2], 400),
    ("noise.wav", lambda mp3: b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64), 400),
])
def test_bad_files_are_rejected_cleanly(http, speech_mp3_file, name, make, status):
    r = transcribe(http, name, make(speech_mp3_file.read_bytes()))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == "file" and error["message"]
    if r.status_code == 415:
        assert "unsupported file type" in error["message"]
    # the replica is still healthy afterwards
    assert transcribe(http, "a.mp3", speech_mp3_file.read_bytes()).status_code == 200
