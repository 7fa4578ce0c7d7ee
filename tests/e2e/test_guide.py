"""The user guide's curl commands, run verbatim with the endpoint and secret substituted."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.keys import API_KEY
from tests.support.media import SENTENCE, data_uri, image_bytes, word_error_rate
from tests.support.models import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    MULTILINGUAL_SPEECH_MODEL,
    ONE_SLOT_MODEL,
    REPO,
    SPEECH_MODEL,
    VISION_MODEL,
)

pytestmark = pytest.mark.e2e
GUIDE_IMAGE_URL = "https://example.com/image.jpg"
VENDORED = REPO / "tests" / "data" / "guide_commands.md"
GUIDE = REPO.parent / "shared" / "seed" / "endpoint-guide.md"  # the original, where a checkout has it beside


def curl_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```\n(curl .*?)```", markdown.read_text(), flags=re.S)


def guide_curls() -> list[str]:
    return [b.replace("\\\n", " ") for b in curl_blocks(VENDORED)]


@pytest.mark.skipif(not GUIDE.exists(), reason="the original guide is not beside this checkout")
def test_vendored_commands_match_the_guide():
    assert curl_blocks(VENDORED) == curl_blocks(GUIDE)


def run_curl(command: str, endpoint: str, model: str = "", audio: Path | None = None) -> str:
    command = (command.replace("<SECRET>", API_KEY).replace("<ENDPOINT>", endpoint)
               .replace("<MODEL_ID>", model))
    if audio is not None:
        command = command.replace("/path/to/audio.mp3", str(audio))
    out = subprocess.run(["curl", "-sS", "--fail-with-body", *shlex.split(command)[1:]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_guide_curls(serve_endpoint, speech_mp3_file, image_server):
    models, text, image, audio = guide_curls()
    listed = json.loads(run_curl(models, serve_endpoint))
    assert {m["id"] for m in listed["data"]} == {CHAT_MODEL, VISION_MODEL, EMBEDDING_MODEL, SPEECH_MODEL,
                                                 MULTILINGUAL_SPEECH_MODEL, ONE_SLOT_MODEL}
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
