"""A corpus of hostile inputs, built on the spot, each with the status and error code it must get.

Used by the unit tests of each check and by the end-to-end test that sends all of them to the running service.
"""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.support.media import image_bytes, long_text, speech_wav


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes | str  # image or audio bytes, or an image URL
    status: int
    code: str | None


# --- images ---------------------------------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        chunks.append((png[at + 4:at + 8], png[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks)


def png_with_bad_zlib() -> bytes:
    """Damaged compressed pixel data whose chunk checksums are all valid (so `verify` passes)."""
    chunks = png_chunks(image_bytes("png"))
    return png_from([(k, d[:2] + bytes(b ^ 0x5A for b in d[2:]) if k == b"IDAT" else d) for k, d in chunks])


def png_with_text_bomb() -> bytes:
    """A zTXt chunk after the pixels that inflates to 64 MB."""
    chunks = png_chunks(image_bytes("png"))
    bomb = (b"Comment", b"Comment\0\0" + zlib.compress(bytes(64 * 1024 * 1024), 9))
    return png_from(chunks[:-1] + [bomb] + chunks[-1:])


def tiny_huge_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of width x height: a few kB on the wire, width*height*3 bytes once decoded as RGB."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG", optimize=True)
    return out.getvalue()


def image_cases() -> list[Case]:
    jpeg, gif, webp = image_bytes("jpeg"), image_bytes("gif"), image_bytes("webp")
    return [
        Case("truncated jpeg", jpeg[:len(jpeg) // 2], 400, "invalid_image"),
        Case("truncated gif", gif[:len(gif) - 12], 400, "invalid_image"),
        Case("truncated webp", webp[:len(webp) // 2], 400, "invalid_image"),
        Case("png with bad zlib data and valid checksums", png_with_bad_zlib(), 400, "invalid_image"),
        Case("png with a compressed-text bomb after its pixels", png_with_text_bomb(), 400, "invalid_image"),
        Case("png over the pixel cap", tiny_huge_png(10_000, 6_000), 400, "image_too_large"),
        Case("jpeg magic then garbage", b"\xff\xd8\xff" + bytes(200), 400, "invalid_image"),
        Case("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "unsupported_file_type"),
    ]


# --- image URLs -----------------------------------------------------------------------------------------------

UNPARSABLE_URLS = [
    "http://[::1", "http://0177.0.0.1/x.png", "http://a..b/x.png", "http://" + "a" * 70 + ".com/x.png",
    "http://ｅｘａｍｐｌｅ.com/x.png", "http://exa\tmple.com/x.png", "http://a:b:c/x.png", "https://x" + "." * 300,
    "http://\x00/x.png", "http:///x.png", "javascript:alert(1)", "file:///etc/passwd",
]
# Addresses that reach (or may reach) an internal network through a translation or tunnelling range.
SPECIAL_ADDRESS_URLS = [
    "http://[64:ff9b::7f00:1]/x.png",  # NAT64 of 127.0.0.1
    "http://[64:ff9b:1::a00:1]/x.png",  # local-use NAT64 of 10.0.0.1
    "http://[2002:7f00:1::]/x.png",  # 6to4 of 127.0.0.1
    "http://[::127.0.0.1]/x.png",  # IPv4-compatible
    "http://[fec0::1]/x.png",  # site-local
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x.png",  # Teredo
    "http://[::ffff:10.0.0.1]/x.png",  # IPv4-mapped private
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
]


def url_cases() -> list[Case]:
    return [Case(f"url {u!r}", u, 400, "invalid_image_url") for u in UNPARSABLE_URLS + SPECIAL_ADDRESS_URLS]


# --- audio ----------------------------------------------------------------------------------------------------

OGG_SDP = b"OggS\nv=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"
HLS_IN_MP4 = b"\0\0\0\x18ftypisom" + b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n"


def ffmpeg(src: Path, *args: str) -> bytes:
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(src), *args, "pipe:1"],
                          capture_output=True, check=True).stdout


def audio_cases(workdir: Path) -> list[Case]:
    wav = speech_wav(workdir / "hostile-sentence.wav", long_text(25))
    truncated_wav = wav.read_bytes()
    return [
        Case("ogg magic followed by an SDP description", OGG_SDP, 400, None),
        Case("mp4 magic followed by an HLS playlist", HLS_IN_MP4, 400, None),
        Case("wav header with no samples", truncated_wav[:44], 400, None),
        Case("wav cut in half (its header promises more)", truncated_wav[:len(truncated_wav) // 2], 400, None),
        Case("png renamed audio", image_bytes("png"), 415, "unsupported_file_type"),
        Case("video-only mp4", _video_only_mp4(workdir), 400, None),
    ]


def _video_only_mp4(workdir: Path) -> bytes:
    path = workdir / "video-only.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


def audio_that_must_work(workdir: Path) -> list[tuple[str, bytes]]:
    """Unusual but legitimate audio: each must be transcribed (200), not refused."""
    wav = speech_wav(workdir / "unusual.wav", long_text(25))
    switching = (ffmpeg(wav, "-ar", "44100", "-ac", "2", "-f", "mp3")
                 + ffmpeg(wav, "-ar", "8000", "-ac", "1", "-f", "mp3"))
    return [
        ("mp3 switching from 44.1 kHz stereo to 8 kHz mono", switching),
        ("variable-bitrate mp3 without a Xing frame", ffmpeg(wav, "-q:a", "6", "-write_xing", "0", "-f", "mp3")),
    ]
