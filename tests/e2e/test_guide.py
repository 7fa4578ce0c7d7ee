"""The user guide's three curl commands, run verbatim with the endpoint and secret substituted."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.e2e.conftest import CHAT_MODEL, SPEECH_MODEL
from tests.media import SENTENCE, word_error_rate

pytestmark = pytest.mark.e2e
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
def test_guide_curls(serve_endpoint, speech_mp3_file):
    models, text, image, audio = guide_curls()
    listed = json.loads(run_curl(models, serve_endpoint))
    assert {m["id"] for m in listed["data"]} == {CHAT_MODEL, SPEECH_MODEL}
    answer = json.loads(run_curl(text, serve_endpoint, CHAT_MODEL))
    assert answer["choices"][0]["message"]["content"]
    transcript = json.loads(run_curl(audio, serve_endpoint, SPEECH_MODEL, speech_mp3_file))
    assert word_error_rate(SENTENCE, transcript["text"]) <= 0.3
