"""The user guide's three curl commands, run verbatim with the endpoint and secret substituted."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.e2e.conftest import CHAT_MODEL, ONE_SLOT_MODEL, SPEECH_MODEL, VISION_MODEL
from tests.media import SENTENCE, data_uri, image_bytes, word_error_rate

pytestmark = pytest.mark.e2e
GUIDE_IMAGE_URL = "https://example.com/image.jpg"
GUIDE = Path(__file__).resolve().parents[3] / "shared" / "seed" / "endpoint-guide.md"


def guide_curls() -> list[str]:
    blocks = re.findall(r"```\n(curl .*?)```", GUIDE.read_text(), flags=re.S)
    return [b.replace("\\\n", " ") for b in blocks]


def run_curl(command: str, endpoint: str, model: str = "", audio: Path | None = None) -> str:
    command = (command.replace("<SECRET>", API_KEY).replace("<ENDPOINT>", endpoint)
               .replace("<MODEL_ID>", model))
    if audio is not None:
        command = command.replace("/path/to/audio.mp3", str(audio))
    out = subprocess.run(["curl", "-sS", "--fail-with-body", *shlex.split(command)[1:]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.skipif(not GUIDE.exists(), reason="the guide lives in shared/seed beside the repository")
def test_guide_curls(serve_endpoint, speech_mp3_file, image_server):
    models, text, image, audio = guide_curls()
    listed = json.loads(run_curl(models, serve_endpoint))
    assert {m["id"] for m in listed["data"]} == {CHAT_MODEL, VISION_MODEL, SPEECH_MODEL, ONE_SLOT_MODEL}
    answer = json.loads(run_curl(text, serve_endpoint, CHAT_MODEL))
    assert answer["choices"][0]["message"]["content"]
    # The guide's image URL, pointed at a local image server (no internet here), then as a data URI.
    # The guide's JSON sits in single quotes and contains "What's": as printed, no POSIX shell can parse it.
    # Escaping that one apostrophe the shell way ('\'') keeps the JSON byte for byte.
    image = image.replace("What's", "What'\\''s")
    for url in (image_server.url + "/image.jpeg", data_uri(image_bytes("jpeg"), "image/jpeg")):
        described = json.loads(run_curl(image.replace(GUIDE_IMAGE_URL, url), serve_endpoint, VISION_MODEL))
        assert described["choices"][0]["message"]["role"] == "assistant"
        assert described["usage"]["prompt_tokens"] > 10  # the image's placeholder tokens are in the prompt
    transcript = json.loads(run_curl(audio, serve_endpoint, SPEECH_MODEL, speech_mp3_file))
    assert word_error_rate(SENTENCE, transcript["text"]) <= 0.3
