"""Upload checks decided by the bytes themselves: audio container sniffing."""

from __future__ import annotations

from serve_app.config import AUDIO_FORMATS
from serve_app.errors import UnsupportedFileType

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
