"""Audio transcriptions: the multipart form fields, the response formats OpenAI defines, and which audio
containers an upload may be (decided by its bytes: the gateway checks, the coordinator pins the demuxer)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.config import AUDIO_FORMATS
from serve_app.errors import UnsupportedFileType

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


class TranscriptionRequest(BaseModel):
    """Every form field but `file`, which travels separately as bytes; a translation is one too."""

    model_config = ConfigDict(extra="forbid")

    model: str
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$", description="ISO-639-1 code")
    prompt: str | None = Field(None, max_length=4096)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=lambda: ["segment"])
    stream: bool = False
    filename: str | None = Field(None, description="Name the client gave the upload (informational).")
    # Set by the route, never by the form: /v1/audio/translations translates into English.
    task: Literal["transcribe", "translate"] = "transcribe"

    def wants_words(self) -> bool:
        return "word" in self.timestamp_granularities


SUPPORTED_AUDIO = ", ".join(AUDIO_FORMATS)


def sniff_audio(data: bytes) -> str:
    """Container of an audio upload, from its magic bytes; raises UnsupportedFileType otherwise."""
    head = data[:64]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"  # ID3 tag or an MPEG audio frame sync (layer bits non-zero, which excludes raw AAC)
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg"
    raise UnsupportedFileType(
        f"unsupported file type: the upload is not audio in a supported format ({SUPPORTED_AUDIO}).",
        param="file",
    )
