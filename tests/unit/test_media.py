import pytest

from serve_app.errors import UnsupportedFileType
from serve_app.protocol.audio import sniff_audio
from tests.support.media import convert


@pytest.mark.parametrize("ext, extra, kind", [
    ("mp3", [], "mp3"), ("m4a", [], "mp4"), ("mp4", [], "mp4"), ("webm", [], "webm"),
    ("ogg", [], "ogg"), ("flac", [], "flac"), ("mpeg", ["-f", "mpeg"], "mpeg"), ("wav", [], "wav"),
])
def test_sniffs_real_encodings(speech_wav_file, tmp_path, ext, extra, kind):
    path = convert(speech_wav_file, tmp_path / f"a.{ext}", *extra)
    assert sniff_audio(path.read_bytes()) == kind


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"hello, this is text", b"%PDF-1.7", b"\0" * 8])
def test_rejects_non_audio(data):
    with pytest.raises(UnsupportedFileType, match="unsupported file type"):
        sniff_audio(data)
