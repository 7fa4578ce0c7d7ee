"""Session-wide fixtures: speech files synthesized once per run (helpers live in tests/support)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.image_server import ImageServer
from tests.support.media import FRENCH_SENTENCE, convert, long_text, speech_wav
from tests.support.postgres import PostgresServer, require_postgres


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory) -> Path:
    """Every gateway the tests start (in-process or `serve run`) keeps its state here, never in ~/.cache."""
    path = tmp_path_factory.mktemp("state")
    os.environ["ENDPOINT_STATE_DIR"] = str(path)
    os.environ.pop("ENDPOINT_STATE_URL", None)
    return path


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for this session (the state store's cluster database)."""
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speech_wav_file(speech_dir) -> Path:
    return speech_wav(speech_dir / "speech.wav")


@pytest.fixture(scope="session")
def french_speech_file(speech_dir) -> Path:
    return convert(speech_wav(speech_dir / "french.wav", FRENCH_SENTENCE, voice="fr"), speech_dir / "french.mp3")


@pytest.fixture(scope="session")
def speech_mp3_file(speech_dir, speech_wav_file) -> Path:
    return convert(speech_wav_file, speech_dir / "speech.mp3")


@pytest.fixture(scope="session")
def over_four_hours_mp3(speech_dir) -> Path:
    """4 h 1 min of 8 kb/s silence: 14.5 MB, under the byte limit but over the duration limit."""
    path = speech_dir / "long.mp3"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "14460", "-c:a", "libmp3lame", "-b:a", "8k", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def ten_minute_speech(speech_dir) -> tuple[Path, str]:
    """About ten minutes of synthesized speech as a 32 kb/s mp3, and its text."""
    text = long_text(1630)
    wav = speech_wav(speech_dir / "ten-minutes.wav", text)
    return convert(wav, speech_dir / "ten-minutes.mp3", "-ac", "1", "-b:a", "32k"), text


@pytest.fixture(scope="session")
def image_server():
    """A real HTTP server on loopback with images, redirects and slow or oversized answers."""
    with ImageServer() as server:
        yield server
