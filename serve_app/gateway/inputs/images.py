"""Image checks decided by the bytes themselves: format by magic bytes, size, pixel count, integrity."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import warnings
from dataclasses import dataclass

from serve_app.config import IMAGE_FORMATS
from serve_app.errors import FileTooLarge, InvalidRequest, UnsupportedFileType
from serve_app.gateway.body import too_large

SUPPORTED_IMAGES = ", ".join(f.upper() for f in IMAGE_FORMATS)
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int  # per image
    max_request_pixels: int  # all images of one request together: bounds what the replica decodes


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str  # jpeg, png, webp, gif
    width: int
    height: int

    def data_uri(self) -> str:
        return f"data:image/{self.format};base64," + base64.b64encode(self.data).decode("ascii")


def image_too_large(limit: int, param: str) -> FileTooLarge:
    return too_large(limit, "the image", param)


def sniff_image(data: bytes, param: str | None = None) -> str:
    """Format of an image from its magic bytes (never the name or declared type); raises otherwise."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    raise UnsupportedFileType(f"unsupported file type: the image is not in a supported format ({SUPPORTED_IMAGES}).",
                              param=param)


def decode_data_uri(url: str, max_bytes: int, param: str) -> bytes:
    """Bytes of a `data:` URI; the size is checked from the base64 length before decoding."""
    match = _DATA_URI.match(url)
    if match is None or not match.group("b64"):
        raise InvalidRequest("Invalid image data URI: expected `data:image/<type>;base64,<data>`.", param=param)
    payload = url[match.end():]
    if (len(payload) // 4) * 3 - 2 > max_bytes:  # the smallest size this base64 can decode to
        raise image_too_large(max_bytes, param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("Invalid image data URI: the base64 data is malformed.", param=param) from None
    if len(data) > max_bytes:
        raise image_too_large(max_bytes, param)
    if not data:
        raise InvalidRequest("Invalid image data URI: the image is empty.", param=param)
    return data


def inspect_image(data: bytes, limits: ImageLimits, param: str) -> CheckedImage:
    """Format, byte size and pixel count, read from the header before any pixel is decoded."""
    if len(data) > limits.max_bytes:
        raise image_too_large(limits.max_bytes, param)
    image_format = sniff_image(data, param)
    with _pillow_errors(image_format, limits, param) as image_module:
        with image_module.open(io.BytesIO(data)) as image:
            width, height = image.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(width, height, limits.max_pixels, param)
    return CheckedImage(data, image_format, width, height)


def decode_image(image: CheckedImage, limits: ImageLimits, param: str) -> None:
    """Decode every pixel once, as the model replica will: structure, checksums, compressed data and trailing
    chunks (Pillow's `verify` alone checks nothing for JPEG, GIF or WEBP). Raises a 400 for any damage."""
    with _pillow_errors(image.format, limits, param) as image_module:
        with image_module.open(io.BytesIO(image.data)) as opened:
            opened.verify()
        with image_module.open(io.BytesIO(image.data)) as opened:
            opened.load()


@contextlib.contextmanager
def _pillow_errors(image_format: str, limits: ImageLimits, param: str):
    """Pillow, with its decompression-bomb warning as an error and every decoding failure as a 400."""
    from PIL import Image  # the gateway's only imaging dependency, loaded on the first image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield Image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(0, 0, limits.max_pixels, param) from None
    except InvalidRequest:
        raise
    except Exception:  # noqa: BLE001 Pillow raises many types for broken files; none of them should reach the client
        raise InvalidRequest(f"The image could not be decoded: it is corrupt or truncated {image_format} data.",
                             param=param, code="invalid_image") from None


def _too_many_pixels(width: int, height: int, limit: int, param: str) -> InvalidRequest:
    size = f" ({width}x{height})" if width else ""
    return InvalidRequest(f"The image{size} has more than the maximum of {limit:,} pixels; please downscale it.",
                          param=param, code="image_too_large")
