"""Session-wide fixtures: the API secret and speech files synthesized once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media import convert, speech_wav

API_KEY = "test-secret-" + "5f2c9a1e7b3d4c60"
OTHER_KEY = "second-secret-" + "a81b9c"
# Named keys the e2e Serve config declares (by digest), each with a small budget to run into.
LIMITED_KEY = "limited-" + "77c1"  # 4 requests per minute
TOKEN_KEY = "tokens-" + "91aa"  # 30 tokens per minute
AUDIO_KEY = "audio-" + "3b02"  # 8 audio seconds per minute
ASR_ONLY_KEY = "asr-only-" + "e5d0"  # may use the speech model only
ADMIN_KEY = "admin-" + "0f4e"  # may read /v1/usage
IMAGE_KEY = "images-" + "c7d1"  # 3 images per minute


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speech_wav_file(speech_dir) -> Path:
    return speech_wav(speech_dir / "speech.wav")


@pytest.fixture(scope="session")
def speech_mp3_file(speech_dir, speech_wav_file) -> Path:
    return convert(speech_wav_file, speech_dir / "speech.mp3")


@pytest.fixture(scope="session")
def over_four_hours_mp3(speech_dir) -> Path:
    """4 h 1 min of 8 kb/s silence: 14.5 MB, under the byte limit but over the duration limit."""
    import subprocess

    path = speech_dir / "long.mp3"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "14460", "-c:a", "libmp3lame", "-b:a", "8k", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def ten_minute_speech(speech_dir) -> tuple[Path, str]:
    """About ten minutes of synthesized speech as a 32 kb/s mp3, and its text."""
    from tests.media import long_text

    text = long_text(1630)
    wav = speech_wav(speech_dir / "ten-minutes.wav", text)
    return convert(wav, speech_dir / "ten-minutes.mp3", "-ac", "1", "-b:a", "32k"), text
