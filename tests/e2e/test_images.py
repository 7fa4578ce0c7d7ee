"""Images in chat messages through the real gateway: every format, every rejection, remote fetching."""

from __future__ import annotations

import io
import time

import httpx
import openai
import pytest
from PIL import Image

from tests.support.errors import assert_error
from tests.support.keys import ADMIN_KEY, IMAGE_KEY
from tests.support.media import IMAGE_FORMATS, data_uri, image_bytes
from tests.support.models import CHAT_MODEL, MAX_AUDIO_BYTES, MAX_IMAGE_BYTES, SPEECH_MODEL, VISION_MODEL

pytestmark = pytest.mark.e2e


def image_message(*urls: str, text: str = "What's in this image?") -> list[dict]:
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": parts}]



def post_images(http, *urls: str, model: str = VISION_MODEL, **extra) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": image_message(*urls),
                                                   "max_tokens": 4, **extra})



@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_sdk_data_uri_in_each_format(client, fmt):
    r = client.chat.completions.create(model=VISION_MODEL, max_tokens=6, temperature=0,
                                       messages=image_message(data_uri(image_bytes(fmt), f"image/{fmt}")))
    assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10 and r.model == VISION_MODEL


def test_streaming_with_an_image_and_detail(client):
    messages = image_message(data_uri(image_bytes("webp")))
    messages[0]["content"][1]["image_url"]["detail"] = "low"
    chunks = list(client.chat.completions.create(model=VISION_MODEL, messages=messages, max_tokens=5, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 5


def test_the_image_reaches_the_model(http):
    """Random weights, but greedy and deterministic: a different image must change the answer."""
    answers = {post_images(http, data_uri(image_bytes("png", color=c)), temperature=0, max_tokens=8)
               .json()["choices"][0]["message"]["content"] for c in [(250, 0, 0), (0, 0, 250), (250, 0, 0)]}
    assert len(answers) == 2


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_remote_image_by_url(http, image_server, fmt):
    r = post_images(http, f"{image_server.url}/image.{fmt}")
    assert r.status_code == 200, r.text


def test_models_say_what_each_model_accepts(http):
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    vision = cards[VISION_MODEL]
    assert vision["capabilities"] == {"input": ["text", "image"], "output": ["text"], "tools": True,
                                      "structured_outputs": True, "reasoning": False}
    assert vision["limits"]["max_image_bytes"] == MAX_IMAGE_BYTES and vision["limits"]["max_images_per_request"] == 4
    assert vision["limits"]["image_formats"] == ["jpeg", "png", "webp", "gif"]
    assert cards[CHAT_MODEL]["capabilities"]["input"] == ["text"]
    assert cards[SPEECH_MODEL]["capabilities"]["input"] == ["audio"]
    assert cards[SPEECH_MODEL]["limits"]["max_audio_bytes"] == MAX_AUDIO_BYTES


@pytest.mark.parametrize("payload, mime", [
    (image_bytes("bmp"), "image/png"), (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    (b"%PDF-1.4 not an image", "image/jpeg"),
])
def test_unsupported_formats_are_415_whatever_they_claim(http, payload, mime):
    r = post_images(http, data_uri(payload, mime))
    assert_error(r, 415, "unsupported_file_type", text="unsupported file type")
    assert r.json()["error"]["param"] == "messages[0].content[1].image_url"


def test_image_over_20_mb_is_413(http):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_IMAGE_BYTES - 7)
    assert_error(post_images(http, data_uri(big)), 413, "file_too_large", text="file too large")


def test_sdk_sees_file_too_large_for_a_remote_image(client, image_server):
    with pytest.raises(openai.APIStatusError, match="file too large") as err:
        client.chat.completions.create(model=VISION_MODEL, messages=image_message(image_server.url + "/big-no-length"))
    assert err.value.status_code == 413


def test_decompression_bomb_is_400(http):
    out = io.BytesIO()
    Image.new("1", (12_000, 6_000)).save(out, format="PNG")
    assert_error(post_images(http, data_uri(out.getvalue())), 400, "image_too_large", text="pixels")


def test_corrupt_and_malformed_images_are_400(http):
    png = image_bytes("png")
    assert_error(post_images(http, data_uri(png[:60])), 400, "invalid_image", text="corrupt or truncated")
    assert_error(post_images(http, "data:image/png;base64,%%%"), 400, None, text="malformed")
    assert_error(post_images(http, "data:image/png,rawbytes"), 400, None, text="data URI")
    assert_error(post_images(http, "ftp://example.com/a.png"), 400, "invalid_image_url", text="http")


def test_too_many_images_is_400(http):
    urls = [data_uri(image_bytes("png"))] * 5
    assert_error(post_images(http, *urls), 400, "too_many_images", text="at most 4 images")


def test_image_to_a_text_model_names_the_model(http):
    r = post_images(http, data_uri(image_bytes("png")), model=CHAT_MODEL)
    assert_error(r, 400, "model_not_supported", "model", text=CHAT_MODEL)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/image.png", "http://10.0.0.7/image.png",
                                 "http://169.254.169.254/latest/meta-data/", "http://localhost:{port}/image.png",
                                 "{server}/to-metadata"])
def test_internal_addresses_are_refused(http, image_server, url):
    port = image_server.url.rsplit(":", 1)[1]
    r = post_images(http, url.format(port=port, server=image_server.url))
    assert_error(r, 400, "invalid_image_url", text="private, loopback, link-local or reserved")


def test_slow_remote_image_is_cut_at_the_time_limit(http, image_server):
    started = time.monotonic()
    r = post_images(http, image_server.url + "/slow")
    assert_error(r, 400, "invalid_image_url", text="did not arrive within 3 s")
    assert time.monotonic() - started < 8


def test_images_per_minute_limit_counts_images(serve_endpoint):
    headers = {"x-api-key": IMAGE_KEY}
    body = {"model": VISION_MODEL, "max_tokens": 2, "messages": image_message(*[data_uri(image_bytes("png"))] * 2)}
    first = httpx.post(serve_endpoint + "/v1/chat/completions", headers=headers, json=body, timeout=120)
    second = httpx.post(serve_endpoint + "/v1/chat/completions", headers=headers, json=body, timeout=120)
    third = httpx.post(serve_endpoint + "/v1/chat/completions", headers=headers, json=body, timeout=120)
    assert (first.status_code, second.status_code) == (200, 200)  # 4 images: the budget of 3 went negative
    assert_error(third, 429, "rate_limit_exceeded", text="images per minute")
    time.sleep(2.5)  # the usage ledger is written every second
    usage = httpx.get(serve_endpoint + "/v1/usage", headers={"x-api-key": ADMIN_KEY}, timeout=30,
                      params={"start_time": int(time.time()) - 3600, "group_by": "key", "bucket_width": "1h"}).json()
    assert sum(r["images"] for b in usage["data"] for r in b["results"] if r["key"] == "images") == 4
