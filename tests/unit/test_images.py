"""Image checks by bytes, data URIs, and the SSRF-safe fetcher against a real local HTTP server."""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import time

import pytest
from PIL import Image

from serve_app.errors import APIError, FileTooLarge, InvalidRequest, UnsupportedFileType
from serve_app.gateway.inputs.image_fetch import ImageFetcher
from serve_app.gateway.inputs.image_parts import ImageInputs
from serve_app.gateway.inputs.images import (
    CheckedImage,
    ImageLimits,
    decode_data_uri,
    decode_image,
    inspect_image,
    sniff_image,
)
from serve_app.protocol.chat import ChatCompletionRequest
from tests.support.hostile import image_cases, tiny_huge_png, url_cases
from tests.support.image_server import HOST
from tests.support.media import IMAGE_FORMATS, data_uri, image_bytes
from tests.support.models import MAX_IMAGE_BYTES

LIMITS = ImageLimits(max_bytes=MAX_IMAGE_BYTES, max_pixels=50_000_000, max_request_pixels=100_000_000)


def check_image(data: bytes, limits: ImageLimits, param: str) -> CheckedImage:
    """Both of the gateway's checks on one image, as ImageInputs runs them: the header, then every pixel."""
    image = inspect_image(data, limits, param)
    decode_image(image, limits, param)
    return image


def png_of(size: tuple[int, int], mode: str = "1") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_formats_are_told_by_their_bytes(fmt):
    data = image_bytes(fmt)
    assert sniff_image(data) == fmt
    checked = check_image(data, LIMITS, "p")
    assert (checked.format, checked.width, checked.height) == (fmt, 48, 32)
    assert decode_data_uri(checked.data_uri(), MAX_IMAGE_BYTES, "p") == data


@pytest.mark.parametrize("data", [image_bytes("bmp"), image_bytes("tiff"), b"<svg xmlns='x'/>", b"%PDF-1.7", b"x"])
def test_other_files_are_unsupported_file_type_whatever_they_claim(data):
    with pytest.raises(UnsupportedFileType, match="unsupported file type") as err:
        check_image(data, LIMITS, "messages[0].content[1].image_url")
    assert err.value.status_code == 415 and err.value.param == "messages[0].content[1].image_url"


def test_corrupt_image_is_400_not_a_crash():
    data = image_bytes("png")
    with pytest.raises(InvalidRequest, match="corrupt or truncated") as err:
        check_image(data[:40] + b"\0" * 40 + data[80:], LIMITS, "p")
    assert err.value.code == "invalid_image"


def test_pixel_cap_refuses_decompression_bombs_from_the_header():
    bomb = png_of((10_000, 6_000))  # 60 MP that compress to a few kB
    assert len(bomb) < 100_000
    with pytest.raises(InvalidRequest, match="10000x6000.*50,000,000 pixels") as err:
        check_image(bomb, LIMITS, "p")
    assert err.value.code == "image_too_large"
    with pytest.raises(InvalidRequest, match="pixels"):  # past Pillow's own bomb threshold too
        check_image(png_of((20_000, 20_000)), LIMITS, "p")
    assert check_image(png_of((8_000, 6_000)), LIMITS, "p").width == 8_000  # a 48 MP photo passes


def test_size_cap_is_exact_and_checked_before_decoding():
    at_cap = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_IMAGE_BYTES - 8)
    assert len(decode_data_uri(data_uri(at_cap), MAX_IMAGE_BYTES, "p")) == MAX_IMAGE_BYTES
    with pytest.raises(FileTooLarge, match="file too large"):
        decode_data_uri(data_uri(at_cap + b"\0"), MAX_IMAGE_BYTES, "p")
    with pytest.raises(FileTooLarge, match="file too large"):
        check_image(at_cap + b"\0", LIMITS, "p")


@pytest.mark.parametrize("uri", [
    "data:image/png;base64,@@@@", "data:image/png,rawbytes", "data:;base64", "data:image/png;base64,",
    "data:image/png;base64,iVBORw0KGgo=extra",
])
def test_malformed_data_uris_are_400(uri):
    with pytest.raises(InvalidRequest, match="data URI") as err:
        decode_data_uri(uri, MAX_IMAGE_BYTES, "p")
    assert err.value.status_code == 400


def test_declared_mime_type_is_ignored():
    assert decode_data_uri(data_uri(image_bytes("gif"), "image/jpeg"), MAX_IMAGE_BYTES, "p")[:3] == b"GIF"
    odd_case = "DATA:image/png;charset=x;BASE64," + base64.b64encode(b"abc").decode()
    assert decode_data_uri(odd_case, MAX_IMAGE_BYTES, "p") == b"abc"


# --- remote images -----------------------------------------------------------------------------------

def fetch(url: str, allow=(f"{HOST}/32",), timeout_s: float = 3, max_redirects: int = 3) -> bytes:
    async def go():
        fetcher = ImageFetcher(MAX_IMAGE_BYTES, timeout_s, max_redirects, list(allow))
        try:
            return await fetcher.fetch(url, "p")
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_allowed_host_is_fetched(image_server, fmt):
    assert fetch(f"{image_server.url}/image.{fmt}") == image_bytes(fmt)


def test_an_image_is_asked_for_uncompressed_from_a_server_that_gzips_when_it_may(image_server):
    assert fetch(image_server.url + "/gzip-if-asked") == image_bytes("png")


def test_redirect_to_an_allowed_image_is_followed(image_server):
    assert fetch(image_server.url + "/to-image") == image_bytes("png")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.png", "http://localhost/x.png", "http://10.1.2.3/x.png", "http://192.168.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.png", "http://[fd00::1]/x.png",
    "http://[::ffff:127.0.0.1]/x.png", "http://0.0.0.0/x.png", "http://224.0.0.1/x.png",
])
def test_internal_addresses_are_refused_without_connecting(url):
    with pytest.raises(InvalidRequest, match="private, loopback, link-local or reserved") as err:
        fetch(url)
    assert err.value.code == "invalid_image_url"


def test_loopback_server_is_refused_unless_allowed(image_server):
    with pytest.raises(InvalidRequest, match="refused"):
        fetch(image_server.url + "/image.png", allow=())


def test_redirect_to_metadata_address_is_refused(image_server):
    with pytest.raises(InvalidRequest, match="169.254.169.254 resolves to a private"):
        fetch(image_server.url + "/to-metadata")


def test_redirect_loop_stops_at_the_limit(image_server):
    with pytest.raises(InvalidRequest, match="more than 2 redirects"):
        fetch(image_server.url + "/loop", max_redirects=2)


def test_oversized_stream_without_length_is_cut_at_the_cap(image_server):
    started = time.monotonic()
    with pytest.raises(FileTooLarge, match="file too large"):
        fetch(image_server.url + "/big-no-length")
    assert time.monotonic() - started < 10


def test_slow_image_is_cut_at_the_time_cap(image_server):
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="did not arrive within 1 s"):
        fetch(image_server.url + "/slow", timeout_s=1)
    assert time.monotonic() - started < 3


def test_http_errors_and_schemes(image_server):
    with pytest.raises(InvalidRequest, match="answered HTTP 404"):
        fetch(image_server.url + "/missing.png")
    for url in ("ftp://example.com/x.png", "file:///etc/passwd", "javascript:alert(1)", "//example.com/x.png"):
        with pytest.raises(InvalidRequest, match="http"):
            fetch(url)


def test_public_addresses_pass_the_address_check():
    fetcher = ImageFetcher(MAX_IMAGE_BYTES, 1, 0, [])
    assert fetcher._allowed("example.com", ipaddress.ip_address("93.184.215.14"))
    assert fetcher._allowed("example.com", ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"))
    assert not fetcher._allowed("x", ipaddress.ip_address("100.64.0.1"))  # carrier-grade NAT is not public


# --- hostile images ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", image_cases(), ids=lambda c: c.name)
def test_hostile_images_are_refused_at_the_gateway_with_their_code(case):
    with pytest.raises(APIError) as err:
        check_image(case.payload, LIMITS, "p")
    assert (err.value.status_code, err.value.code) == (case.status, case.code), err.value.message


def test_the_decoded_size_of_a_request_is_budgeted():
    limits = ImageLimits(max_bytes=MAX_IMAGE_BYTES, max_pixels=50_000_000, max_request_pixels=60_000_000)
    inputs = ImageInputs(limits, ImageFetcher(MAX_IMAGE_BYTES, 3, 0, []))
    big = data_uri(tiny_huge_png(7_000, 6_000))  # 42 MP each: one passes, two are over the request's budget
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": big}}, {"type": "image_url", "image_url": {"url": big}}]}])
    with pytest.raises(InvalidRequest, match="together") as err:
        asyncio.run(inputs.resolve(request, max_images=4))
    assert err.value.code == "image_too_large"


@pytest.mark.parametrize("case", url_cases(), ids=lambda c: c.name)
def test_unparsable_and_tunnelled_urls_are_400_without_connecting(case):
    with pytest.raises(InvalidRequest) as err:
        fetch(case.payload, allow=())
    assert err.value.code == "invalid_image_url"


def test_slow_name_lookups_do_not_starve_the_shared_thread_pool(monkeypatch):
    """A timed-out fetch cannot stop its DNS lookup: lookups run in threads of their own, so a burst of slow
    names leaves the event loop's default pool (image decoding, file writes) free."""
    import socket
    import time

    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host.endswith(".slow.example"):
            time.sleep(1.5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)

    async def burst():
        fetcher = ImageFetcher(MAX_IMAGE_BYTES, 0.2, 0, [])
        fetches = [fetcher.fetch(f"http://n{i}.slow.example/a.png", "p") for i in range(12)]
        refused = await asyncio.gather(*fetches, return_exceptions=True)
        started = time.monotonic()
        await asyncio.to_thread(lambda: None)  # the shared pool, right after
        waited = time.monotonic() - started
        await fetcher.aclose()
        return refused, waited

    refused, waited = asyncio.run(burst())
    assert all(isinstance(r, InvalidRequest) and "did not arrive" in r.message for r in refused)
    assert waited < 0.5
